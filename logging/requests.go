package logging

import (
	"context"
	"net/http"
	"net/textproto"

	"github.com/rs/xid"
	"github.com/rs/zerolog"
)

// Requests returns middleware that gives each request an id (an xid, as
// hlog's), answers it in the response header named header, and puts it with
// logger in the request's context, where Log and RequestID find them. That
// is one context value and one copy of the request, where hlog's pair of
// handlers makes two of each and a logger per request.
func Requests(logger zerolog.Logger, header string) func(http.Handler) http.Handler {
	header = textproto.CanonicalMIMEHeaderKey(header)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			request := &request{logger: &logger, id: xid.New().String()}
			w.Header()[header] = []string{request.id}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestKey{}, request)))
		})
	}
}

// request is what Requests keeps of a request in its context.
type request struct {
	logger *zerolog.Logger
	id     string
}

// requestKey is the context key of a request.
type requestKey struct{}

// Log starts a line about r at level, with r's id as its first field
// (request_id). It returns nil, on which zerolog's methods do nothing, when
// the level is not logged or r did not come through Requests.
func Log(r *http.Request, level zerolog.Level) *zerolog.Event {
	request, _ := r.Context().Value(requestKey{}).(*request)
	if request == nil {
		return nil
	}
	return request.logger.WithLevel(level).Str("request_id", request.id)
}

// RequestID returns the id Requests gave r, or "" if none.
func RequestID(r *http.Request) string {
	if request, _ := r.Context().Value(requestKey{}).(*request); request != nil {
		return request.id
	}
	return ""
}
