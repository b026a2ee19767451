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
// is one context, holding the request's id and its header value, and one
// copy of the request, where hlog's pair of handlers makes two of each and a
// logger per request.
func Requests(logger zerolog.Logger, header string) func(http.Handler) http.Handler {
	header = textproto.CanonicalMIMEHeaderKey(header)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := &requestContext{Context: r.Context(), request: request{logger: &logger, id: xid.New().String()}}
			ctx.idValue[0] = ctx.request.id
			w.Header()[header] = ctx.idValue[:]
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// request is what Requests keeps of a request in its context.
type request struct {
	logger *zerolog.Logger
	id     string
}

// requestContext is a request's context with its request, in one
// allocation with the value of its id's response header.
type requestContext struct {
	context.Context
	request request
	idValue [1]string
}

// Value returns the request for requestKey, and the parent's value of any
// other key.
func (c *requestContext) Value(key any) any {
	if key == (requestKey{}) {
		return &c.request
	}
	return c.Context.Value(key)
}

// AfterFunc runs f once the context is done, as context.AfterFunc on the
// parent: the contexts the context package makes from this one then hook to
// the parent (a scope's slots, say) rather than have a goroutine watch it.
func (c *requestContext) AfterFunc(f func()) (stop func() bool) {
	return context.AfterFunc(c.Context, f)
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
