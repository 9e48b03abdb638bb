package saga

import (
	"encoding/json"
	"strings"
	"testing"
)

const cmdJSON = `{"v":1,"saga_id":"0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22","saga":"order","saga_version":1,
 "step":2,"step_name":"reserve_stock","phase":"invoke","action":"reserve_stock",
 "command_id":"0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22/2/invoke","attempt":1,
 "reply_to":"saga.reply.inventory","payload":{"sku":"widget","quantity":2,"note":"grüße 😀"}}`

func TestCommandRoundTrip(t *testing.T) {
	c, err := DecodeCommand([]byte(cmdJSON))
	if err != nil {
		t.Fatal(err)
	}
	var in struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	}
	if err := c.Bind(&in); err != nil || in.SKU != "widget" || in.Quantity != 2 {
		t.Fatalf("bind: %+v %v", in, err)
	}
	rep := OK(c.Payload).reply(c, c.Payload)
	b, err := rep.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"saga_id":"0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22","step":2,"phase":"invoke",` +
		`"command_id":"0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22/2/invoke","attempt":1,"status":"ok",` +
		`"output":{"sku":"widget","quantity":2,"note":"gr\u00FC\u00DFe \uD83D\uDE00"}}`
	if string(b) != want {
		t.Fatalf("encoded\n got %s\nwant %s", b, want)
	}
	back, err := DecodeReply(b)
	if err != nil || back.Status != StatusOK || !strings.Contains(string(back.Output), `\uD83D\uDE00`) {
		t.Fatalf("decoded back: %+v %v", back, err)
	}
}

func TestResults(t *testing.T) {
	c, _ := DecodeCommand([]byte(cmdJSON))
	r := Fail("", "%s", strings.Repeat("x", 600)).reply(c, nil)
	if r.Error.Code != "error" || len(r.Error.Message) != 511 {
		t.Fatalf("fail: %+v", r.Error)
	}
	b, _ := Retry(2500e6, "busy").reply(c, nil).Encode()
	if !strings.HasSuffix(string(b), `"status":"retry","error":{"code":"retry","message":"busy"},"retry_after":2500}`) {
		t.Fatalf("retry: %s", b)
	}
	if _, err := OK([]int{1}).outputJSON(); err == nil {
		t.Fatal("an array output was taken")
	}
	if out, err := OK(map[string]any{"a": 1}).outputJSON(); err != nil || string(out) != `{"a":1}` {
		t.Fatalf("map output: %s %v", out, err)
	}
	if n := measuredSize(json.RawMessage(`{"a":[1,2],"é":"ü"}`)); n != len(`{"a": [1, 2], "é": "ü"}`) {
		t.Fatalf("measured %d", n)
	}
}
