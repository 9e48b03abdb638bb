// Package saga is the Go SDK of the saga orchestrator sagad: a participant
// that consumes its service's commands from Kafka, runs one handler per
// action and per compensation inside a PostgreSQL transaction together with
// a de-duplication barrier, and replies (docs/SDK-GO.md).
//
// The wire format is docs/PROTOCOL.md; libsaga (sdk/src/saga_protocol.c) is
// the reference, and this package decodes, checks and encodes exactly as it
// does: the same ranges, the same errors, the same bytes for a reply.
package saga

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// Protocol limits (docs/PROTOCOL.md, "Field ranges"; saga/protocol.h).
const (
	ProtocolVersion = 1
	MessageMax      = 1024 * 1024     // bytes: a larger message is malformed
	AttemptMax      = 1000000         // attempt: 1 .. AttemptMax
	RetryAfterMax   = 2592000000      // ms: 30 days
	DeadlineMax     = 253402300799999 // ms: 9999-12-31T23:59:59.999Z
	NameMax         = 255             // saga, step_name, action, error.code
	CommandIDMax    = 255
	TopicMax        = 249
	ErrorMessageMax = 4096 // a reply's error.message is cut to this many bytes
)

// Fan-out elements (docs/PROTOCOL.md, "Fan-out elements (version 2)").
const (
	// ProtocolVersionElements is the version of a command to one element
	// of a fan-out step, and of its reply: version 1 plus "element".
	ProtocolVersionElements = 2
	// ElementsMax bounds an element: 0 .. ElementsMax-1.
	ElementsMax = 100000
)

// Phase is "invoke" (run the action) or "compensate" (undo it).
type Phase string

// The two phases.
const (
	Invoke     Phase = "invoke"
	Compensate Phase = "compensate"
)

// Status is a reply's status.
type Status string

// The three statuses (docs/PROTOCOL.md, "What the statuses mean").
const (
	StatusOK     Status = "ok"
	StatusFailed Status = "failed"
	StatusRetry  Status = "retry"
)

// Command is a command from sagad (docs/PROTOCOL.md, "Command").
type Command struct {
	SagaID      string
	Saga        string
	SagaVersion int
	Step        int
	StepName    string
	Phase       Phase
	Action      string
	CommandID   string
	Attempt     int
	Deadline    int64 // ms since the Unix epoch; 0: none
	ReplyTo     string
	Payload     json.RawMessage // a JSON object; {} when absent
	// Traceparent is the command's W3C traceparent Kafka header ("" if
	// none); the participant copies it onto the reply.
	Traceparent string
	// V is the protocol version: 1, or 2 (ProtocolVersionElements) for a
	// command to one element of a fan-out step; then Element says which
	// (0-based), else it is 0.
	V       int
	Element int
}

// IsElement tells whether c is a command to one element of a fan-out step
// (version 2).
func (c *Command) IsElement() bool { return c.V == ProtocolVersionElements }

// Bind decodes the command's payload into v (a pointer to a struct or map).
func (c *Command) Bind(v any) error {
	if err := json.Unmarshal(c.Payload, v); err != nil {
		return fmt.Errorf("payload of %s: %w", c.CommandID, err)
	}
	return nil
}

// ReplyError is a reply's error object.
type ReplyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// absent in the decoded message (not only empty)
	noCode, noMessage bool
}

// Reply is a participant's answer (docs/PROTOCOL.md, "Reply").
type Reply struct {
	SagaID     string
	Step       int
	Phase      Phase
	CommandID  string
	Attempt    int
	Status     Status
	Output     json.RawMessage // with ok: a JSON object (nil: {})
	Error      *ReplyError     // with failed or retry
	RetryAfter int64           // with retry: ms, 0: the step's backoff
	// V is 2 (ProtocolVersionElements) for a reply to an element's command,
	// with that command's Element; any other value is sent as 1.
	V       int
	Element int
}

// ProtocolError is a malformed message: Field is the field at fault
// ("error.code" for one inside error; "" when the message as a whole is:
// not JSON, not an object, too large), Reason says why in libsaga's words.
type ProtocolError struct{ Field, Reason string }

func (e *ProtocolError) Error() string { return "malformed: " + e.Reason }

func protoErr(format string, a ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, a...)}
}

func fieldErr(field, format string, a ...any) error {
	return &ProtocolError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// IsProtocolError tells whether err is a malformed message.
func IsProtocolError(err error) bool {
	var p *ProtocolError
	return errors.As(err, &p)
}

// checkJSON applies what jansson's parser refuses and Go's accepts: bytes
// that are not UTF-8, \u0000 and lone surrogates in strings, duplicate keys
// (at any depth).
func checkJSON(buf []byte) error {
	if !utf8.Valid(buf) {
		return protoErr("not JSON: invalid UTF-8")
	}
	in := false
	for i := 0; i < len(buf); i++ {
		c := buf[i]
		if !in {
			if c == '"' {
				in = true
			}
			continue
		}
		switch c {
		case '"':
			in = false
		case '\\':
			if i+1 < len(buf) && buf[i+1] == 'u' && i+5 < len(buf) {
				v, err := strconv.ParseUint(string(buf[i+2:i+6]), 16, 16)
				if err != nil {
					return nil // the JSON parser reports it
				}
				switch {
				case v == 0:
					return protoErr("not JSON: \\u0000 is not allowed")
				case v >= 0xDC00 && v <= 0xDFFF:
					return protoErr("not JSON: invalid Unicode '\\u%04X'", v)
				case v >= 0xD800 && v <= 0xDBFF:
					j := i + 6
					if j+5 >= len(buf) || buf[j] != '\\' || buf[j+1] != 'u' {
						return protoErr("not JSON: invalid Unicode '\\u%04X'", v)
					}
					lo, err := strconv.ParseUint(string(buf[j+2:j+6]), 16, 16)
					if err != nil || lo < 0xDC00 || lo > 0xDFFF {
						return protoErr("not JSON: invalid Unicode '\\u%04X'", v)
					}
					i = j + 5
					continue
				}
				i += 5
				continue
			}
			i++
		}
	}
	return checkDuplicates(buf)
}

func checkDuplicates(buf []byte) error {
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next token of an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the JSON parser reports syntax errors
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{object: d == '{', keys: map[string]bool{}, key: true})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return nil
				}
			}
			continue
		}
		if n, ok := tok.(json.Number); ok {
			if isInteger(json.RawMessage(n)) {
				if _, err := strconv.ParseInt(string(n), 10, 64); err != nil {
					return protoErr("not JSON: too big integer")
				}
			} else if f, err := strconv.ParseFloat(string(n), 64); err != nil && math.IsInf(f, 0) {
				return protoErr("not JSON: real number overflow")
			}
		}
		if top != nil && top.object {
			if top.key {
				k := tok.(string)
				if top.keys[k] {
					return protoErr("not JSON: duplicate object key %q", truncate(k, 40))
				}
				top.keys[k] = true
				top.key = false
			} else {
				top.key = true
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

type fields map[string]json.RawMessage

func parseObject(buf []byte) (fields, error) {
	if buf == nil {
		return nil, protoErr("empty message")
	}
	if len(buf) > MessageMax {
		return nil, protoErr("message of %d bytes exceeds the %d byte limit", len(buf), MessageMax)
	}
	if err := checkJSON(buf); err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, protoErr("not JSON: %v", err)
	}
	if dec.More() {
		return nil, protoErr("not JSON: end of file expected")
	}
	switch v.(type) {
	case map[string]any:
	case []any:
		return nil, protoErr("message is not a JSON object")
	default: // jansson reads only an object or an array at the top
		return nil, protoErr("not JSON: '[' or '{' expected near the start")
	}
	var f fields
	if err := json.Unmarshal(buf, &f); err != nil {
		return nil, protoErr("not JSON: %v", err)
	}
	return f, nil
}

func isNull(raw json.RawMessage) bool { return raw == nil || string(raw) == "null" }

// isInteger: jansson's integer grammar (no fraction, no exponent).
func isInteger(raw json.RawMessage) bool {
	s := string(raw)
	if s != "" && s[0] == '-' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (f fields) int(key string, min, max int64, required bool) (int64, error) {
	raw, ok := f[key]
	if !ok || isNull(raw) {
		if required {
			return 0, fieldErr(key, "field %q is missing", key)
		}
		return 0, nil
	}
	if !isInteger(raw) {
		return 0, fieldErr(key, "field %q must be an integer", key)
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, protoErr("not JSON: too big integer")
	}
	if n < min || n > max {
		return 0, fieldErr(key, "field %q is %d, out of range [%d, %d]", key, n, min, max)
	}
	return n, nil
}

// str: a string field of at most max bytes (0: no bound); its value is
// never quoted, so the reason survives whatever it holds.
func (f fields) str(key string, required bool, max int) (string, error) {
	raw, ok := f[key]
	if !ok || isNull(raw) {
		if required {
			return "", fieldErr(key, "field %q is missing", key)
		}
		return "", nil
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fieldErr(key, "field %q must be a string", key)
	}
	if required && s == "" {
		return "", fieldErr(key, "field %q must not be empty", key)
	}
	if max > 0 && len(s) > max {
		return "", fieldErr(key, "field %q is %d bytes long, over the limit of %d", key, len(s), max)
	}
	return s, nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// TopicNameValid: 1 to 249 letters, digits, '.', '_', '-'; not "." or "..".
func TopicNameValid(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > TopicMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// FormatCommandID gives "<saga_id>/<step>/<phase>".
func FormatCommandID(sagaID string, step int, phase Phase) string {
	return fmt.Sprintf("%s/%d/%s", sagaID, step, phase)
}

// FormatElementCommandID gives the command id of one element of a fan-out
// step, "<saga_id>/<step>/<phase>/<element>"; a negative element gives
// FormatCommandID's.
func FormatElementCommandID(sagaID string, step int, phase Phase, element int) string {
	if element < 0 {
		return FormatCommandID(sagaID, step, phase)
	}
	return fmt.Sprintf("%s/%d/%s/%d", sagaID, step, phase, element)
}

type common struct {
	v, element int
	sagaID     string
	step       int
	phase      Phase
	commandID  string
	attempt    int
}

func (f fields) common() (c common, err error) {
	n, err := f.int("v", 0, 1000000, true)
	if err != nil {
		return c, err
	}
	if n != ProtocolVersion && n != ProtocolVersionElements {
		return c, fieldErr("v", "field \"v\" is %d; this side speaks %d and %d", n, ProtocolVersion, ProtocolVersionElements)
	}
	c.v = int(n)
	// Only a version 2 message has an element; version 1's "element", if
	// any, is not ours to read (as any unknown field).
	if c.v == ProtocolVersionElements {
		if n, err = f.int("element", 0, ElementsMax-1, true); err != nil {
			return c, err
		}
		c.element = int(n)
	}
	var id string
	if raw := f["saga_id"]; len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &id) != nil {
		return c, fieldErr("saga_id", "field \"saga_id\" must be a string")
	}
	if !isUUID(id) {
		return c, fieldErr("saga_id", "field \"saga_id\" is not a UUID: \"%s\"", truncate(id, 40))
	}
	c.sagaID = id
	if n, err = f.int("step", 0, 9999, true); err != nil {
		return c, err
	}
	c.step = int(n)
	var ph string
	if raw := f["phase"]; len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &ph) != nil ||
		(ph != string(Invoke) && ph != string(Compensate)) {
		return c, fieldErr("phase", "field \"phase\" must be \"invoke\" or \"compensate\"")
	}
	c.phase = Phase(ph)
	if c.commandID, err = f.str("command_id", true, CommandIDMax); err != nil {
		return c, err
	}
	if n, err = f.int("attempt", 1, AttemptMax, true); err != nil {
		return c, err
	}
	c.attempt = int(n)
	return c, nil
}

// DecodeCommand decodes and checks a command as libsaga's
// saga_command_decode does; a malformed one is a *ProtocolError.
func DecodeCommand(buf []byte) (*Command, error) {
	f, err := parseObject(buf)
	if err != nil {
		return nil, err
	}
	c, err := f.common()
	if err != nil {
		return nil, err
	}
	cmd := &Command{SagaID: c.sagaID, Step: c.step, Phase: c.phase, CommandID: c.commandID, Attempt: c.attempt,
		V: c.v, Element: c.element}
	if cmd.Saga, err = f.str("saga", true, NameMax); err != nil {
		return nil, err
	}
	if cmd.StepName, err = f.str("step_name", true, NameMax); err != nil {
		return nil, err
	}
	if cmd.Action, err = f.str("action", true, NameMax); err != nil {
		return nil, err
	}
	if cmd.ReplyTo, err = f.str("reply_to", true, TopicMax); err != nil {
		return nil, err
	}
	if !TopicNameValid(cmd.ReplyTo) {
		return nil, fieldErr("reply_to", "field \"reply_to\" is not a Kafka topic name (letters, digits, '.', '_', '-'; not \".\" or \"..\")")
	}
	n, err := f.int("saga_version", 1, 1000000000, true)
	if err != nil {
		return nil, err
	}
	cmd.SagaVersion = int(n)
	if cmd.Deadline, err = f.int("deadline", 0, DeadlineMax, false); err != nil {
		return nil, err
	}
	raw := f["payload"]
	switch {
	case isNull(raw):
		cmd.Payload = json.RawMessage("{}")
	case raw[0] != '{':
		return nil, fieldErr("payload", "field \"payload\" must be an object")
	default:
		cmd.Payload = append(json.RawMessage(nil), raw...)
	}
	return cmd, nil
}

// DecodeReply decodes and checks a reply as libsaga's saga_reply_decode.
func DecodeReply(buf []byte) (*Reply, error) {
	f, err := parseObject(buf)
	if err != nil {
		return nil, err
	}
	c, err := f.common()
	if err != nil {
		return nil, err
	}
	r := &Reply{SagaID: c.sagaID, Step: c.step, Phase: c.phase, CommandID: c.commandID, Attempt: c.attempt,
		V: c.v, Element: c.element}
	var st string
	if raw := f["status"]; len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &st) != nil ||
		(st != "ok" && st != "failed" && st != "retry") {
		return nil, fieldErr("status", "field \"status\" must be \"ok\", \"failed\" or \"retry\"")
	}
	r.Status = Status(st)
	if raw := f["output"]; !isNull(raw) {
		if raw[0] != '{' {
			return nil, fieldErr("output", "field \"output\" must be an object")
		}
		r.Output = append(json.RawMessage(nil), raw...)
	}
	if raw := f["error"]; !isNull(raw) {
		if raw[0] != '{' {
			return nil, fieldErr("error", "field \"error\" must be an object")
		}
		var ef fields
		if err := json.Unmarshal(raw, &ef); err != nil {
			return nil, fieldErr("error", "field \"error\" must be an object")
		}
		code, err := ef.str("code", false, NameMax)
		if err == nil {
			var msg string
			if msg, err = ef.str("message", false, 0); err == nil {
				r.Error = &ReplyError{Code: code, Message: truncate(msg, ErrorMessageMax),
					noCode: isNull(ef["code"]), noMessage: isNull(ef["message"])}
			}
		}
		if err != nil {
			pe := err.(*ProtocolError)
			return nil, fieldErr("error."+pe.Field, "in \"error\": %s", pe.Reason)
		}
	}
	if r.RetryAfter, err = f.int("retry_after", 0, RetryAfterMax, false); err != nil {
		return nil, err
	}
	return r, nil
}

// Encode gives the reply's bytes as libsaga writes them: compact, keys in
// libsaga's order, every non-ASCII character escaped (jansson's
// JSON_COMPACT | JSON_ENSURE_ASCII). A reply of version 2 has "element"
// after "status"; its element out of range is an error, as libsaga's
// saga_reply_encode refuses it.
func (r *Reply) Encode() ([]byte, error) {
	var b bytes.Buffer
	elements := r.V == ProtocolVersionElements
	if elements && (r.Element < 0 || r.Element >= ElementsMax) {
		return nil, fmt.Errorf("element %d out of range [0, %d]", r.Element, ElementsMax-1)
	}
	if elements {
		b.WriteString(`{"v":2,"saga_id":`)
	} else {
		b.WriteString(`{"v":1,"saga_id":`)
	}
	writeString(&b, r.SagaID)
	b.WriteString(`,"step":`)
	b.WriteString(strconv.Itoa(r.Step))
	b.WriteString(`,"phase":`)
	writeString(&b, string(r.Phase))
	b.WriteString(`,"command_id":`)
	writeString(&b, r.CommandID)
	b.WriteString(`,"attempt":`)
	b.WriteString(strconv.Itoa(r.Attempt))
	b.WriteString(`,"status":`)
	writeString(&b, string(r.Status))
	if elements {
		b.WriteString(`,"element":`)
		b.WriteString(strconv.Itoa(r.Element))
	}
	if r.Status == StatusOK {
		b.WriteString(`,"output":`)
		out := r.Output
		if isNull(out) {
			out = json.RawMessage("{}")
		}
		if err := writeCompact(&b, out); err != nil {
			return nil, fmt.Errorf("reply output: %w", err)
		}
	} else {
		e := r.Error
		if e == nil {
			e = &ReplyError{Code: "error"}
		}
		b.WriteString(`,"error":{"code":`)
		writeString(&b, e.Code)
		b.WriteString(`,"message":`)
		writeString(&b, e.Message)
		b.WriteString(`}`)
		if r.Status == StatusRetry && r.RetryAfter > 0 {
			b.WriteString(`,"retry_after":`)
			b.WriteString(strconv.FormatInt(r.RetryAfter, 10))
		}
	}
	b.WriteString(`}`)
	return b.Bytes(), nil
}

// writeString writes s as jansson does with JSON_ENSURE_ASCII.
func writeString(b *bytes.Buffer, s string) { writeStr(b, s, true) }

func writeStr(b *bytes.Buffer, s string, ascii bool) {
	const hex = "0123456789ABCDEF"
	u := func(r rune) {
		b.WriteString(`\u`)
		b.WriteByte(hex[r>>12&15])
		b.WriteByte(hex[r>>8&15])
		b.WriteByte(hex[r>>4&15])
		b.WriteByte(hex[r&15])
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			u(r)
		case r < 0x80:
			b.WriteByte(byte(r))
		case !ascii:
			b.WriteRune(r)
		case r < 0x10000:
			u(r)
		default:
			r -= 0x10000
			u(0xD800 | (r >> 10 & 0x3FF))
			u(0xDC00 | (r & 0x3FF))
		}
	}
	b.WriteByte('"')
}

// writeCompact re-writes a JSON value compactly, its strings as
// writeString writes them and its keys in their order.
func writeCompact(b *bytes.Buffer, raw json.RawMessage) error { return writeJSON(b, raw, true) }

// writeJSON: compact and ASCII (jansson's JSON_COMPACT|JSON_ENSURE_ASCII),
// or spaced and UTF-8 (jansson's flags 0, PostgreSQL's jsonb text).
func writeJSON(b *bytes.Buffer, raw json.RawMessage, compact bool) error {
	comma, colon := ", ", ": "
	if compact {
		comma, colon = ",", ":"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type frame struct{ object, first, key bool }
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			if len(stack) == 0 && errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			b.WriteByte(byte(d))
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return nil
			}
			continue
		}
		if top != nil {
			switch {
			case top.object && top.key:
				if !top.first {
					b.WriteString(comma)
				}
			case top.object:
				b.WriteString(colon)
			case !top.first:
				b.WriteString(comma)
			}
			top.first = false
			if top.object {
				top.key = !top.key
			}
		}
		switch v := tok.(type) {
		case json.Delim:
			b.WriteByte(byte(v))
			stack = append(stack, &frame{object: v == '{', first: true, key: true})
		case string:
			writeStr(b, v, compact)
		case json.Number:
			b.WriteString(v.String())
		case bool:
			b.WriteString(strconv.FormatBool(v))
		case nil:
			b.WriteString("null")
		}
		if len(stack) == 0 {
			return nil
		}
	}
}

func parseAny(raw []byte) (any, error) {
	if err := checkJSON(raw); err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("text after the JSON value")
	}
	return v, nil
}

// measuredSize is the size of a JSON value as PostgreSQL's jsonb prints
// it and jansson's json_dumpb(v, 0) writes it (what libsaga and sagad's
// max_output_bytes measure): UTF-8 unescaped, ", " and ": " between items.
func measuredSize(raw json.RawMessage) int {
	var b bytes.Buffer
	if err := writeJSON(&b, raw, false); err != nil {
		return len(raw)
	}
	return b.Len()
}
