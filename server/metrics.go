package server

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// requireToken guards h with Config.AuthToken as an HTTP bearer token
// ("Authorization: Bearer <token>", compared in constant time), answering
// 401 without it; h is returned as is when auth is off or
// Config.MetricsNoAuth is set.
func (s *Server) requireToken(h http.Handler) http.Handler {
	if s.cfg.AuthToken == "" || s.cfg.MetricsNoAuth {
		return h
	}
	want := []byte(s.cfg.AuthToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pancap metrics"`)
			http.Error(w, "this server requires a bearer token on /metrics: send \"Authorization: Bearer <token>\" (pancap: --auth-token; --metrics-no-auth serves /metrics without it)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
