package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"testing"

	"balancing-reverse-proxy/internal/faults"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parsed is what a reader of an answer makes of it.
type parsed struct {
	Failed           bool
	Status           string
	Code             int
	Proto            string
	Header, Trailer  http.Header
	ContentLength    int64
	Close            bool
	TransferEncoding []string
	Body             string
	BodyFailed       bool
}

// readAsGo reads raw as Go's Transport reads an answer: by ReadResponse, 1xx
// heads but 101 skipped, an upgrade's body the rest of the stream.
func readAsGo(raw []byte, method string) parsed {
	br := bufio.NewReader(bytes.NewReader(raw))
	req := &http.Request{Method: method}
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return parsed{Failed: true}
		}
		if resp.StatusCode >= 100 && resp.StatusCode <= 199 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		if resp.StatusCode == http.StatusSwitchingProtocols && resp.Header.Get("Upgrade") != "" && hasToken(resp.Header["Connection"], "upgrade") {
			resp.Body = io.NopCloser(br)
		}
		return readAnswer(resp)
	}
}

// readAsOwn reads raw with h1Client's reader.
func readAsOwn(raw []byte, method string) (parsed, framing, error) {
	x := &answer{conn: &h1Conn{br: bufio.NewReader(bytes.NewReader(raw))}}
	r := headReader{br: x.conn.br, maxBytes: len(raw) + 1}
	f, _, err := r.readResponse(method, &x.resp)
	if err != nil {
		return parsed{Failed: true}, f, err
	}
	x.framing, x.remaining = f, f.length
	x.resp.Body = http.NoBody
	if f.body == chunkedBody {
		x.chunks = httputil.NewChunkedReader(x.conn.br)
	}
	if f.body != noBody {
		x.resp.Body = io.NopCloser(readerFunc(x.read))
	}
	return readAnswer(&x.resp), f, nil
}

// readerFunc is an io.Reader of a function.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// readAnswer reads resp's body and returns what the caller has of resp.
func readAnswer(resp *http.Response) parsed {
	body, err := io.ReadAll(resp.Body)
	return parsed{
		Status: resp.Status, Code: resp.StatusCode, Proto: resp.Proto,
		Header: resp.Header, Trailer: resp.Trailer, ContentLength: resp.ContentLength,
		Close: resp.Close, TransferEncoding: resp.TransferEncoding,
		Body: string(body), BodyFailed: err != nil,
	}
}

// FuzzOwnReaderReadsAsGoReadsIt holds h1Client's reading of answers to Go's:
// whatever the bytes, both fail or both read the same status, fields, body
// and trailers, but where the proxy's own check refuses an answer that Go
// takes: one framed both by Content-Length and by Transfer-Encoding.
//
//	go test -run XXX -fuzz FuzzOwnReaderReadsAsGoReadsIt -fuzztime 5m ./wire/
func FuzzOwnReaderReadsAsGoReadsIt(f *testing.F) {
	for _, fault := range append(append(append([]faults.Fault{}, faults.BeforeAnswer...), faults.InAnswer...), headVariants...) {
		f.Add(false, []byte(fault.Reply))
		f.Add(true, []byte(fault.Reply))
	}
	f.Fuzz(func(t *testing.T, head bool, raw []byte) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		want := readAsGo(raw, method)
		got, _, err := readAsOwn(raw, method)
		if errors.Is(err, ErrAmbiguousFraming) {
			require.False(t, want.Failed, "refused as ambiguous what Go refuses too")
			ambiguous := want.TransferEncoding != nil || want.Header.Get("Content-Length") != ""
			assert.True(t, ambiguous, "refused as ambiguous: %q", raw)
			return
		}
		assert.Equal(t, want, got, "%q", raw)
	})
}
