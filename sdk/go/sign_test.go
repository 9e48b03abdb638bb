package saga

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tests/data/sign/vectors.json: docs/PROTOCOL.md's signature examples,
// which libsaga and Python's hmac are checked against too.
func TestSignVectorsFile(t *testing.T) {
	path := filepath.Join("..", "..", "tests", "data", "sign", "vectors.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no %s (the module outside its repository)", path)
	}
	var f struct {
		Vectors []struct {
			Name       string `json:"name"`
			KeyHex     string `json:"key_hex"`
			Topic      string `json:"topic"`
			MessageKey string `json:"message_key"`
			Value      string `json:"value"`
			Signature  string `json:"signature"`
		} `json:"vectors"`
	}
	readJSON(t, path, &f)
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			key, err := hex.DecodeString(v.KeyHex)
			if err != nil {
				t.Fatal(err)
			}
			// Some vector keys are shorter than a key file allows: sign
			// with the bytes directly, as the vectors' generator does.
			k := &Keys{keys: [][]byte{key}}
			if got := k.Sign(v.Topic, []byte(v.MessageKey), []byte(v.Value)); got != v.Signature {
				t.Fatalf("got %s, want %s", got, v.Signature)
			}
			if err := k.Verify(v.Topic, []byte(v.MessageKey), []byte(v.Value), []byte(v.Signature)); err != nil {
				t.Fatal(err)
			}
			err = k.Verify(v.Topic+"x", []byte(v.MessageKey), []byte(v.Value), []byte(v.Signature))
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("another topic verified: %v", err)
			}
		})
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k1, k2 := strings.Repeat("ab", 32), strings.Repeat("01", 32)
	k, err := LoadKeys(write("two.key", "# rotated\n\n"+k1+"\n  "+k2+"  \n", 0o600))
	if err != nil || len(k.keys) != 2 {
		t.Fatalf("two keys: %v", err)
	}
	old, _ := KeysFromHex(k2)
	sig := old.Sign("t", nil, []byte("v"))
	if err := k.Verify("t", nil, []byte("v"), []byte(sig)); err != nil {
		t.Fatalf("the second key does not verify: %v", err)
	}
	if got := k.Sign("t", nil, []byte("v")); got == sig {
		t.Fatal("the second key signs")
	}
	for name, c := range map[string]struct {
		text string
		mode os.FileMode
		want string
	}{
		"others": {k1 + "\n", 0o604, "readable by others"},
		"short":  {"abcd\n", 0o600, "shorter than 32 bytes"},
		"odd":    {k1 + "a\n", 0o600, "odd number"},
		"nothex": {strings.Repeat("zz", 32) + "\n", 0o600, "not hex"},
		"three":  {k1 + "\n" + k1 + "\n" + k1 + "\n", 0o600, "more than 2 keys"},
		"empty":  {"# nothing\n", 0o600, "no key"},
	} {
		if _, err := LoadKeys(write(name, c.text, c.mode)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	if err := k.Verify("t", nil, []byte("v"), nil); err == nil || !strings.Contains(err.Error(), "unsigned") {
		t.Errorf("no header: %v", err)
	}
	if err := k.Verify("t", nil, []byte("v"), []byte("v2=00")); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("bad header: %v", err)
	}
}
