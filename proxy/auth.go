package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// tokenDigests are the accepted tokens' SHA-256 digests: comparing digests
// of equal length in constant time reveals neither a token's content nor
// its length.
type tokenDigests [][sha256.Size]byte

func newTokenDigests(tokens []string) tokenDigests {
	d := make(tokenDigests, len(tokens))
	for i, t := range tokens {
		d[i] = sha256.Sum256([]byte(t))
	}
	return d
}

// allows reports whether the request carries one of the tokens. Every
// token is compared, so timing does not tell which one matched.
func (d tokenDigests) allows(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	ok := 0
	for _, want := range d {
		ok |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return ok == 1
}

// auth requires a bearer token when tokens are configured, answering
// failures with fail, the face's own error writer.
func (s *Server) auth(fail func(echo.Context, error) error) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if len(s.tokens) == 0 {
			return next
		}
		return func(c echo.Context) error {
			if !s.tokens.allows(c.Request()) {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="tei-sidecar"`)
				return fail(c, errUnauthorized)
			}
			return next(c)
		}
	}
}
