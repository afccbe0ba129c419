package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// decodeJSON decodes exactly one JSON object into dst, refusing unknown
// fields, wrong types, trailing data and bodies over MaxBodyBytes. Its errors
// describe the shape of the mistake, never echo the body.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		// curl -d sends application/x-www-form-urlencoded unless told
		// otherwise; the body is still parsed as JSON, as the guide's calls are.
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "application/x-www-form-urlencoded") {
			return &requestError{status: http.StatusUnsupportedMediaType, code: CodeUnsupportedMedia, message: "Content-Type must be application/json"}
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return decodeError(err)
	}
	// encoding/json would silently turn invalid UTF-8 into U+FFFD: a secret
	// value changed without a word. Refuse it instead.
	if !utf8.Valid(body) {
		return badRequest(CodeInvalidJSON, "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeError(err)
		}
		return badRequest(CodeInvalidJSON, "request body must hold a single JSON object")
	}
	return nil
}

func decodeError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return &requestError{status: http.StatusRequestEntityTooLarge, code: CodeBodyTooLarge, message: fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes)}
	case errors.Is(err, io.EOF):
		return badRequest(CodeInvalidJSON, "request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest(CodeInvalidJSON, "request body is truncated JSON")
	case errors.As(err, &se):
		return badRequest(CodeInvalidJSON, fmt.Sprintf("malformed JSON at byte %d", se.Offset))
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest(CodeInvalidType, fmt.Sprintf("request body must be a JSON object, not %s", te.Value))
		}
		return badRequest(CodeInvalidType, fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonKind(te.Type.String()), te.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest(CodeUnknownField, fmt.Sprintf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field ")))
	default:
		return badRequest(CodeInvalidJSON, "malformed JSON")
	}
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "int"):
		return "a number"
	case strings.Contains(goType, "bool"):
		return "a boolean"
	default:
		return "an object"
	}
}

// jsonUnmarshal decodes a nested value, keeping decodeJSON's error shapes.
func jsonUnmarshal(b []byte, dst any) error {
	if err := json.Unmarshal(b, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return err
		}
		return decodeError(err)
	}
	return nil
}
