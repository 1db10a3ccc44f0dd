package bench

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// NormalizeURL turns what a person types for a server into a base URL:
// a full http or https URL, host:port or a bare host, where a missing
// scheme means http://. A trailing slash is dropped.
func NormalizeURL(s string) (string, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return "", errors.New("empty URL")
	}
	raw := in
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return "", fmt.Errorf("%q is not a URL, host:port or host: %v", in, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: the scheme must be http or https, not %q", in, u.Scheme)
	case u.Hostname() == "":
		return "", fmt.Errorf("%q has no host", in)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q: a base URL takes no query or fragment", in)
	}
	return strings.TrimRight(u.String(), "/"), nil
}
