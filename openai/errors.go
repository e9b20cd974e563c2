package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// apiError is an error answered in OpenAI's shape:
// {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	status  int    // HTTP status
	message string // for people
	param   string // the request field at fault; "" for none
	code    string // machine-readable; "" for none
}

func (e *apiError) Error() string { return e.message }

// badParam is a 400 naming the request field param.
func badParam(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, param: param,
		message: param + ": " + fmt.Sprintf(format, args...), code: "invalid_value"}
}

// errorType is the OpenAI error type of an HTTP status.
func errorType(st int) string {
	switch {
	case st == http.StatusUnauthorized:
		return "authentication_error"
	case st == http.StatusTooManyRequests:
		return "rate_limit_error"
	case st >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// httpStatus maps the gRPC code of a failed call to its HTTP status: the
// one place where the two APIs' error vocabularies meet. Codes it does not
// list are 500.
var httpStatus = map[codes.Code]int{
	codes.InvalidArgument:    http.StatusBadRequest,
	codes.OutOfRange:         http.StatusBadRequest,
	codes.FailedPrecondition: http.StatusBadRequest,
	codes.Unauthenticated:    http.StatusUnauthorized,
	codes.PermissionDenied:   http.StatusForbidden,
	codes.NotFound:           http.StatusNotFound,
	codes.ResourceExhausted:  http.StatusTooManyRequests,
	codes.Canceled:           499, // the client went away: nobody reads it
	codes.Unimplemented:      http.StatusNotImplemented,
	codes.Unavailable:        http.StatusServiceUnavailable,
	codes.DeadlineExceeded:   http.StatusGatewayTimeout,
}

// fromStatus converts a gRPC status error of the server package.
func fromStatus(err error) *apiError {
	st := status.Convert(err)
	code, ok := httpStatus[st.Code()]
	if !ok {
		code = http.StatusInternalServerError
	}
	return &apiError{status: code, message: st.Message(), code: strings.ToLower(st.Code().String())}
}

// errorJSON is the body of an error, in OpenAI's shape.
type errorJSON struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// body returns the JSON body of e.
func (e *apiError) body() errorJSON {
	var b errorJSON
	b.Error.Message, b.Error.Type = e.message, errorType(e.status)
	if e.param != "" {
		b.Error.Param = &e.param
	}
	if e.code != "" {
		b.Error.Code = &e.code
	}
	return b
}

// writeError answers e as JSON with its status.
func writeError(w http.ResponseWriter, e *apiError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pancap"`)
	}
	writeJSON(w, e.status, e.body())
}

// writeJSON answers v as JSON with status st.
func writeJSON(w http.ResponseWriter, st int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // our own types always marshal
		st, b = http.StatusInternalServerError, []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st)
	w.Write(append(b, '\n'))
}
