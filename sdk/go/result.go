package saga

import (
	"encoding/json"
	"fmt"
	"time"
)

// Result is what a handler answers: OK, Fail or Retry. The zero Result
// (no outcome set) is answered retry, as libsaga answers a handler that
// set nothing.
type Result struct {
	status     Status
	output     any
	code       string
	message    string
	retryAfter int64
}

// OK: done, and the effect is in the handler's transaction. output is the
// step's output: a JSON object as a struct, a map, json.RawMessage or
// []byte of JSON text; nil gives {}.
func OK(output any) Result { return Result{status: StatusOK, output: output} }

// Fail: a definite business "no" (sagad does not retry; the handler's
// writes are rolled back). code is machine-readable (up to 63 bytes kept),
// the message for people (up to 511 bytes kept), as libsaga keeps them.
func Fail(code, format string, args ...any) Result {
	if code == "" {
		code = "error"
	}
	return Result{status: StatusFailed, code: truncate(code, 63), message: truncate(fmt.Sprintf(format, args...), 511)}
}

// Retry: transient trouble, no effect remains (the handler's writes are
// rolled back); sagad sends the command again after the step's backoff, at
// least after (0: the backoff alone). Retry replies count toward the
// service's circuit breaker in sagad, and are never cached by the barrier.
func Retry(after time.Duration, format string, args ...any) Result {
	ms := after.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	return Result{status: StatusRetry, code: "retry", message: truncate(fmt.Sprintf(format, args...), 511), retryAfter: ms}
}

// Status is the result's status ("" when none was set).
func (r Result) Status() Status { return r.status }

// outputJSON gives the ok output as JSON text, which must be an object.
func (r Result) outputJSON() (json.RawMessage, error) {
	var raw []byte
	switch v := r.output.(type) {
	case nil:
		return json.RawMessage("{}"), nil
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("the output cannot be encoded as JSON: %w", err)
		}
		raw = b
	}
	f, err := parseAny(raw)
	if err != nil {
		return nil, fmt.Errorf("the output is not JSON: %w", err)
	}
	if _, ok := f.(map[string]any); !ok {
		return nil, fmt.Errorf("the output is not a JSON object")
	}
	return raw, nil
}

// reply is the reply to cmd: version 2 with its element when cmd is an
// element's, else version 1.
func (r Result) reply(cmd *Command, output json.RawMessage) *Reply {
	rep := &Reply{SagaID: cmd.SagaID, Step: cmd.Step, Phase: cmd.Phase, CommandID: cmd.CommandID,
		Attempt: cmd.Attempt, Status: r.status, V: ProtocolVersion}
	if cmd.IsElement() {
		rep.V, rep.Element = ProtocolVersionElements, cmd.Element
	}
	if r.status == StatusOK {
		rep.Output = output
	} else {
		rep.Error = &ReplyError{Code: r.code, Message: r.message}
		rep.RetryAfter = r.retryAfter
	}
	return rep
}
