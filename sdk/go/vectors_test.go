package saga

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The shared protocol vectors (tests/vectors/README.md) run through this
// package's codec, signer and partitioner, as libsaga and the Python SDK
// run them. They live in the repository, not in the module: skipped when
// the module is used on its own.
var vectorsDir = filepath.Join("..", "..", "tests", "vectors")

func vectorFiles(t *testing.T, sub string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(vectorsDir, sub, "*.json"))
	if err != nil || len(files) == 0 {
		t.Skipf("no vectors in %s (the module outside its repository)", filepath.Join(vectorsDir, sub))
	}
	return files
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type decodeVector struct {
	Name          string  `json:"name"`
	Kind          string  `json:"kind"`
	Message       *string `json:"message"`
	MessageBase64 *string `json:"message_base64"`
	MessageRepeat *struct {
		Prefix, Fill, Suffix string
		Count                int
	} `json:"message_repeat"`
	Expect struct {
		OK    map[string]any `json:"ok"`
		Error *struct {
			Field         *string `json:"field"`
			Message       *string `json:"message"`
			MessagePrefix *string `json:"message_prefix"`
		} `json:"error"`
	} `json:"expect"`
}

func (v *decodeVector) bytes(t *testing.T) []byte {
	switch {
	case v.Message != nil:
		return []byte(*v.Message)
	case v.MessageBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*v.MessageBase64)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		return b
	case v.MessageRepeat != nil:
		r := v.MessageRepeat
		return []byte(r.Prefix + strings.Repeat(r.Fill, r.Count) + r.Suffix)
	}
	t.Fatalf("%s: no message", v.Name)
	return nil
}

// normal makes a value comparable: through JSON, numbers as json.Number.
func normal(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func commandMap(c *Command) map[string]any {
	return map[string]any{"v": c.V, "element": c.Element, "saga_id": c.SagaID, "saga": c.Saga, "saga_version": c.SagaVersion,
		"step": c.Step, "step_name": c.StepName, "phase": c.Phase, "action": c.Action,
		"command_id": c.CommandID, "attempt": c.Attempt, "deadline": c.Deadline, "reply_to": c.ReplyTo,
		"payload": json.RawMessage(c.Payload)}
}

func replyMap(r *Reply) map[string]any {
	m := map[string]any{"v": r.V, "element": r.Element, "saga_id": r.SagaID, "step": r.Step, "phase": r.Phase,
		"command_id": r.CommandID, "attempt": r.Attempt, "status": r.Status, "output": nil,
		"error_code": nil, "error_message": nil, "retry_after": r.RetryAfter}
	if r.Output != nil {
		m["output"] = json.RawMessage(r.Output)
	}
	if r.Error != nil {
		if !r.Error.noCode {
			m["error_code"] = r.Error.Code
		}
		if !r.Error.noMessage {
			m["error_message"] = r.Error.Message
		}
	}
	return m
}

func TestVectorsDecode(t *testing.T) {
	files := append(vectorFiles(t, "commands"), vectorFiles(t, "replies")...)
	for _, f := range files {
		var v decodeVector
		readJSON(t, f, &v)
		t.Run(v.Kind+"/"+v.Name, func(t *testing.T) {
			var got map[string]any
			var err error
			if v.Kind == "command" {
				var c *Command
				if c, err = DecodeCommand(v.bytes(t)); err == nil {
					got = commandMap(c)
				}
			} else {
				var r *Reply
				if r, err = DecodeReply(v.bytes(t)); err == nil {
					got = replyMap(r)
				}
			}
			if v.Expect.Error == nil {
				if err != nil {
					t.Fatalf("want it decoded, got %v", err)
				}
				if g, w := normal(t, got), normal(t, v.Expect.OK); !reflect.DeepEqual(g, w) {
					t.Fatalf("decoded\n got %v\nwant %v", g, w)
				}
				return
			}
			pe, ok := err.(*ProtocolError)
			if !ok {
				t.Fatalf("want a malformed message, got %v", err)
			}
			e := v.Expect.Error
			if want := ""; e.Field != nil && pe.Field != *e.Field || e.Field == nil && pe.Field != want {
				t.Errorf("field %q, want %v", pe.Field, e.Field)
			}
			if e.Message != nil && pe.Reason != *e.Message {
				t.Errorf("reason %q, want libsaga's %q", pe.Reason, *e.Message)
			}
			if e.MessagePrefix != nil && !strings.HasPrefix(pe.Reason, *e.MessagePrefix) {
				t.Errorf("reason %q, want it to begin %q", pe.Reason, *e.MessagePrefix)
			}
		})
	}
}

func TestVectorsEncode(t *testing.T) {
	for _, f := range vectorFiles(t, "encode") {
		var v struct {
			Name  string `json:"name"`
			Reply struct {
				V            *int            `json:"v"`
				Element      int             `json:"element"`
				SagaID       string          `json:"saga_id"`
				Step         int             `json:"step"`
				Phase        Phase           `json:"phase"`
				CommandID    string          `json:"command_id"`
				Attempt      int             `json:"attempt"`
				Status       Status          `json:"status"`
				Output       json.RawMessage `json:"output"`
				ErrorCode    *string         `json:"error_code"`
				ErrorMessage *string         `json:"error_message"`
				RetryAfter   int64           `json:"retry_after"`
			} `json:"reply"`
			Expect struct {
				JSON string `json:"json"`
			} `json:"expect"`
		}
		readJSON(t, f, &v)
		t.Run(v.Name, func(t *testing.T) {
			in := v.Reply
			r := &Reply{SagaID: in.SagaID, Step: in.Step, Phase: in.Phase, CommandID: in.CommandID,
				Attempt: in.Attempt, Status: in.Status, Output: in.Output, RetryAfter: in.RetryAfter,
				V: ProtocolVersion, Element: in.Element}
			if in.V != nil {
				r.V = *in.V
			}
			if in.ErrorCode != nil || in.ErrorMessage != nil {
				r.Error = &ReplyError{Code: "error"}
				if in.ErrorCode != nil {
					r.Error.Code = *in.ErrorCode
				}
				if in.ErrorMessage != nil {
					r.Error.Message = *in.ErrorMessage
				}
			}
			got, err := r.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != v.Expect.JSON {
				t.Fatalf("encoded\n got %s\nwant %s", got, v.Expect.JSON)
			}
			back, err := DecodeReply(got) // and it decodes back, to its version and element
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if r.V == ProtocolVersionElements {
				want = r.Element
			}
			if back.V != r.V || back.Element != want {
				t.Fatalf("decoded back as v %d element %d", back.V, back.Element)
			}
		})
	}
}

func TestVectorsSignatures(t *testing.T) {
	for _, f := range vectorFiles(t, "signatures") {
		var v struct {
			Name       string   `json:"name"`
			KeysHex    []string `json:"keys_hex"`
			Topic      string   `json:"topic"`
			MessageKey string   `json:"message_key"`
			Value      string   `json:"value"`
			Signature  *string  `json:"signature"`
			Expect     struct {
				Valid bool `json:"valid"`
			} `json:"expect"`
		}
		readJSON(t, f, &v)
		t.Run(v.Name, func(t *testing.T) {
			k, err := KeysFromHex(v.KeysHex...)
			if err != nil {
				t.Fatal(err)
			}
			var sig []byte
			if v.Signature != nil {
				sig = []byte(*v.Signature)
			}
			err = k.Verify(v.Topic, []byte(v.MessageKey), []byte(v.Value), sig)
			if (err == nil) != v.Expect.Valid {
				t.Fatalf("verify: %v, want valid=%v", err, v.Expect.Valid)
			}
			if v.Expect.Valid && len(v.KeysHex) == 1 {
				if got := k.Sign(v.Topic, []byte(v.MessageKey), []byte(v.Value)); !strings.EqualFold(got, *v.Signature) || got != strings.ToLower(got) {
					t.Fatalf("signed %s, want %s", got, *v.Signature)
				}
			}
		})
	}
}

func TestVectorsPartitions(t *testing.T) {
	path := filepath.Join(vectorsDir, "partitions.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no %s", path)
	}
	var v struct {
		Partitioner string `json:"partitioner"`
		Vectors     []struct {
			Key        string         `json:"key"`
			CRC32      json.Number    `json:"crc32"`
			Partitions map[string]int `json:"partitions"`
		} `json:"vectors"`
	}
	readJSON(t, path, &v)
	if v.Partitioner != "consistent_random" || len(v.Vectors) == 0 {
		t.Fatalf("partitions.json: partitioner %q, %d vectors", v.Partitioner, len(v.Vectors))
	}
	n := 0
	for _, vec := range v.Vectors {
		for count, want := range vec.Partitions {
			c, err := strconv.Atoi(count)
			if err != nil {
				t.Fatal(err)
			}
			if got := PartitionFor([]byte(vec.Key), c); got != want {
				t.Errorf("key %s, %d partitions: %d, want %d", vec.Key, c, got, want)
			}
			n++
		}
	}
	t.Logf("%d keys, %d placements agree with librdkafka's consistent_random", len(v.Vectors), n)
}
