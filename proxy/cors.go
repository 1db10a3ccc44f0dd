package proxy

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// corsExposed are the response headers a browser client may read besides
// the CORS-safelisted ones: where the answer came from, when to retry,
// and TEI's accounting.
var corsExposed = append([]string{"X-Cache", "Retry-After"}, teiHeaders...)

// cors answers CORS as TEI does for CORS_ALLOW_ORIGIN (--cors-allow-origin
// in TEI): the listed origins, compared exactly, or any with *; methods
// GET and POST; every preflight (OPTIONS with an Origin) answered by the
// sidecar itself, before authentication, since browsers send no token with
// one. Unlike TEI, which allows only Content-Type, the preflight allows the
// headers the browser asks for (the token's Authorization, X-Priority,
// the OpenAI SDKs' X-Stainless-… headers): the origin is what is checked.
// It returns nil when no origin is configured: no CORS headers at all.
func (s *Server) cors() echo.MiddlewareFunc {
	origins := s.cfg.CORSAllowOrigins
	if len(origins) == 0 {
		return nil
	}
	cfg := middleware.CORSConfig{
		AllowMethods:  []string{http.MethodGet, http.MethodPost},
		ExposeHeaders: corsExposed,
		MaxAge:        600,
	}
	if slices.Contains(origins, "*") {
		cfg.AllowOrigins = []string{"*"}
	} else {
		// Exact matches only, as TEI: echo's own list would also read
		// wildcards and subdomains into an entry.
		cfg.AllowOriginFunc = func(origin string) (bool, error) { return slices.Contains(origins, origin), nil }
	}
	return middleware.CORSWithConfig(cfg)
}
