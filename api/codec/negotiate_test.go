package codec

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func request(headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/scheduler", nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func TestByMediaType(t *testing.T) {
	tests := []struct {
		in   string
		want Codec
	}{
		{"application/json", JSON},
		{"application/json; charset=utf-8", JSON},
		{"Application/JSON;charset=UTF-8", JSON},
		{"application/x-protobuf", Protobuf},
		{"application/x-protobuf; proto=mesos.v1.scheduler.Call", Protobuf},
		{"text/plain", nil},
		{"application/recordio", nil},
		{"application/", nil},
		{"", nil},
	}
	for _, tt := range tests {
		got, err := ByMediaType(tt.in)
		if got != tt.want {
			t.Errorf("ByMediaType(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if (err != nil) != (tt.want == nil) || (err != nil && !errors.Is(err, ErrUnsupportedMediaType)) {
			t.Errorf("ByMediaType(%q) error = %v", tt.in, err)
		}
	}
}

func TestRequestCodec(t *testing.T) {
	tests := []struct {
		name    string
		ct      []string
		want    Codec
		wantErr string
	}{
		{name: "json", ct: []string{"application/json"}, want: JSON},
		{name: "json charset", ct: []string{"application/json; charset=utf-8"}, want: JSON},
		{name: "protobuf", ct: []string{"application/x-protobuf"}, want: Protobuf},
		{name: "missing", wantErr: "missing Content-Type header"},
		{name: "blank", ct: []string{"  "}, wantErr: "missing Content-Type header"},
		{name: "unsupported", ct: []string{"text/plain"}, wantErr: `Content-Type: unsupported media type "text/plain"`},
		{name: "malformed", ct: []string{"json;;"}, wantErr: "Content-Type: unsupported media type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h []string
			for _, v := range tt.ct {
				h = append(h, "Content-Type", v)
			}
			got, err := RequestCodec(request(h...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrUnsupportedMediaType) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestResponseCodec(t *testing.T) {
	tests := []struct {
		name   string
		accept []string
		want   Codec // nil: want a 406 error
	}{
		{name: "absent", want: JSON},
		{name: "empty", accept: []string{""}, want: JSON},
		{name: "json", accept: []string{"application/json"}, want: JSON},
		{name: "protobuf", accept: []string{"application/x-protobuf"}, want: Protobuf},
		{name: "params ignored", accept: []string{"application/x-protobuf; charset=binary"}, want: Protobuf},
		{name: "any", accept: []string{"*/*"}, want: JSON},
		{name: "application any", accept: []string{"application/*"}, want: JSON},
		{name: "first supported", accept: []string{"text/html, application/x-protobuf, application/json"}, want: Protobuf},
		{name: "q prefers", accept: []string{"application/json;q=0.5, application/x-protobuf;q=0.9"}, want: Protobuf},
		{name: "q default 1", accept: []string{"application/json;q=0.99, application/x-protobuf"}, want: Protobuf},
		{name: "q zero excluded", accept: []string{"application/x-protobuf;q=0, application/json;q=0.1"}, want: JSON},
		{name: "specific beats wildcard", accept: []string{"*/*, application/x-protobuf"}, want: Protobuf},
		{name: "wildcard lower q", accept: []string{"*/*;q=0.1, text/html"}, want: JSON},
		{name: "several headers", accept: []string{"text/html", "application/x-protobuf"}, want: Protobuf},
		{name: "malformed entry skipped", accept: []string{"/;;, application/x-protobuf"}, want: Protobuf},
		{name: "bad q skipped", accept: []string{"application/x-protobuf;q=abc, application/json;q=0.2"}, want: JSON},
		{name: "unsupported", accept: []string{"text/html"}},
		{name: "only q zero", accept: []string{"application/json;q=0"}},
		{name: "recordio not for unary", accept: []string{"application/recordio"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h []string
			for _, v := range tt.accept {
				h = append(h, "Accept", v)
			}
			got, err := ResponseCodec(request(h...))
			if tt.want == nil {
				if err == nil || !errors.Is(err, ErrUnsupportedMediaType) || !strings.HasPrefix(err.Error(), "Accept: unsupported media type") {
					t.Fatalf("got %v, %v; want unsupported media type error", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestStreamResponse(t *testing.T) {
	tests := []struct {
		name       string
		headers    []string
		want       Stream
		wantErr    string
		wantHeader map[string]string
	}{
		{
			name: "no accept",
			want: Stream{Codec: JSON, ContentType: "application/json"},
		},
		{
			name:    "json with charset answers bare type",
			headers: []string{"Accept", "application/json; charset=utf-8"},
			want:    Stream{Codec: JSON, ContentType: "application/json"},
		},
		{
			name:    "protobuf",
			headers: []string{"Accept", "application/x-protobuf"},
			want:    Stream{Codec: Protobuf, ContentType: "application/x-protobuf"},
		},
		{
			name:    "wildcard",
			headers: []string{"Accept", "*/*"},
			want:    Stream{Codec: JSON, ContentType: "application/json"},
		},
		{
			name:    "recordio with message accept",
			headers: []string{"Accept", "application/recordio", "Message-Accept", "application/x-protobuf"},
			want:    Stream{Codec: Protobuf, ContentType: "application/recordio", MessageContentType: "application/x-protobuf"},
		},
		{
			name:    "recordio json",
			headers: []string{"Accept", "application/recordio", "Message-Accept", "application/json"},
			want:    Stream{Codec: JSON, ContentType: "application/recordio", MessageContentType: "application/json"},
		},
		{
			name:    "recordio without message accept",
			headers: []string{"Accept", "application/recordio"},
			want:    Stream{Codec: JSON, ContentType: "application/recordio", MessageContentType: "application/json"},
		},
		{
			name:    "recordio q-values",
			headers: []string{"Accept", "application/json;q=0.5, application/recordio", "Message-Accept", "application/json;q=0.1, application/x-protobuf"},
			want:    Stream{Codec: Protobuf, ContentType: "application/recordio", MessageContentType: "application/x-protobuf"},
		},
		{
			name:    "unsupported",
			headers: []string{"Accept", "text/event-stream"},
			wantErr: `Accept: unsupported media type "text/event-stream"`,
		},
		{
			name:    "unsupported message accept",
			headers: []string{"Accept", "application/recordio", "Message-Accept", "text/plain"},
			wantErr: `Message-Accept: unsupported media type "text/plain"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StreamResponse(request(tt.headers...))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || !errors.Is(err, ErrUnsupportedMediaType) {
					t.Fatalf("got %+v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			h := http.Header{"Message-Content-Type": {"stale"}}
			got.SetHeaders(h)
			if h.Get("Content-Type") != tt.want.ContentType || h.Get("Message-Content-Type") != tt.want.MessageContentType {
				t.Errorf("SetHeaders wrote %v", h)
			}
		})
	}
}
