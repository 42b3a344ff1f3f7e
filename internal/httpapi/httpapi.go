// Package httpapi is the one JSON envelope of every Samdrift API, the
// Prometheus HTTP API's: {"status": "success", "data": …} or
// {"status": "error", "errorType": …, "error": …}.
package httpapi

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Error types, as the Prometheus HTTP API names them, and the ones it has
// no name for.
const (
	TypeBadData         = "bad_data"
	TypeExecution       = "execution"
	TypeInternal        = "internal"
	TypeUnavailable     = "unavailable"
	TypeTimeout         = "timeout"
	TypeNotFound        = "not_found"
	TypeUnauthorized    = "unauthorized"
	TypeForbidden       = "forbidden"
	TypeTooLarge        = "too_large"
	TypeTooManyRequests = "too_many_requests"
	TypeMethod          = "method_not_allowed"
	TypeUnsupported     = "unsupported_media_type"
	TypeConflict        = "conflict"
)

// TypeOf is the error type of an HTTP status.
func TypeOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return TypeBadData
	case http.StatusUnauthorized:
		return TypeUnauthorized
	case http.StatusForbidden:
		return TypeForbidden
	case http.StatusNotFound:
		return TypeNotFound
	case http.StatusMethodNotAllowed:
		return TypeMethod
	case http.StatusConflict:
		return TypeConflict
	case http.StatusRequestEntityTooLarge:
		return TypeTooLarge
	case http.StatusUnsupportedMediaType:
		return TypeUnsupported
	case http.StatusUnprocessableEntity:
		return TypeExecution
	case http.StatusTooManyRequests:
		return TypeTooManyRequests
	case http.StatusServiceUnavailable:
		return TypeUnavailable
	case http.StatusGatewayTimeout:
		return TypeTimeout
	}
	if status >= 500 {
		return TypeInternal
	}
	return TypeBadData
}

// Response is the envelope.
type Response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// OK writes data with status 200.
func OK(w http.ResponseWriter, data any) { Write(w, http.StatusOK, data) }

// Write writes data with the given success status.
func Write(w http.ResponseWriter, status int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Response{Status: "success", Data: data})
}

// Error writes an error with its type derived from status.
func Error(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Response{Status: "error", ErrorType: TypeOf(status), Error: msg})
}

// Errorf is Error with a format.
func Errorf(w http.ResponseWriter, status int, format string, args ...any) {
	Error(w, status, fmt.Sprintf(format, args...))
}

// RetryLater writes a 429 or 503 with Retry-After (whole seconds, at least 1).
func RetryLater(w http.ResponseWriter, status int, after time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(after)))
	Error(w, status, msg)
}

// RetryAfterSeconds rounds a wait up to whole seconds, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// Status is an error that knows the HTTP status it should be answered with.
type Status struct {
	Code       int
	Msg        string
	RetryAfter time.Duration
}

func (e *Status) Error() string { return e.Msg }

// Statusf returns a *Status error.
func Statusf(code int, format string, args ...any) *Status {
	return &Status{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// WriteStatus answers with e (Retry-After on 429 and 503).
func WriteStatus(w http.ResponseWriter, e *Status) {
	if e.Code == http.StatusTooManyRequests || e.Code == http.StatusServiceUnavailable {
		RetryLater(w, e.Code, e.RetryAfter, e.Msg)
		return
	}
	Error(w, e.Code, e.Msg)
}
