package saga

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
)

// SignatureHeader is the Kafka header that carries a message's signature.
const SignatureHeader = "saga-signature"

const sigLabel = "saga.v1"

// Keys are a service's signing keys (docs/PROTOCOL.md, "Signed messages"):
// the first signs, any of them verifies (so a key can be rotated).
type Keys struct{ keys [][]byte }

// ErrUnauthenticated wraps every verification failure.
var ErrUnauthenticated = errors.New("unauthenticated")

// KeysFromHex makes Keys from one or two hex keys of 32 to 128 bytes.
func KeysFromHex(hexKeys ...string) (*Keys, error) {
	if len(hexKeys) < 1 || len(hexKeys) > 2 {
		return nil, fmt.Errorf("keys: 1 or 2 keys, not %d", len(hexKeys))
	}
	k := &Keys{}
	for i, h := range hexKeys {
		if err := k.add(h); err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
	}
	return k, nil
}

func (k *Keys) add(h string) error {
	switch {
	case len(h)%2 != 0:
		return errors.New("an odd number of hex digits")
	case len(h)/2 < 32:
		return errors.New("shorter than 32 bytes (64 hex digits; `openssl rand -hex 32` makes one)")
	case len(h)/2 > 128:
		return errors.New("longer than 128 bytes (256 hex digits)")
	case len(k.keys) == 2:
		return errors.New("more than 2 keys (the current one and the one being rotated)")
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return errors.New("not hex (use only 0-9 and a-f)")
	}
	k.keys = append(k.keys, b)
	return nil
}

// LoadKeys reads a key file as libsaga's saga_keys_load: one hex key a
// line, blank lines and '#' comments skipped; a file that others may read
// (any o-rwx bit) is refused, as it holds secrets.
func LoadKeys(path string) (*Keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("key file %s is readable by others (mode %04o): chmod o-rwx %s",
			path, st.Mode().Perm(), path)
	}
	k := &Keys{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := k.add(line); err != nil {
			return nil, fmt.Errorf("key file %s:%d: the key is %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("key file %s: no key (one hex key a line; `openssl rand -hex 32` makes one)", path)
	}
	return k, nil
}

func field(h hash.Hash, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}

func mac(key []byte, topic string, msgKey, value []byte) []byte {
	h := hmac.New(sha256.New, key)
	field(h, []byte(sigLabel))
	field(h, []byte(topic))
	field(h, msgKey)
	field(h, value)
	return h.Sum(nil)
}

// Sign gives the saga-signature header's value for a message produced to
// topic with this key and value: "v1=" and 64 lower-case hex digits.
func (k *Keys) Sign(topic string, msgKey, value []byte) string {
	return "v1=" + hex.EncodeToString(mac(k.keys[0], topic, msgKey, value))
}

// Verify checks sig (the header's value; nil: the message had none) with
// every key, in constant time; an error wraps ErrUnauthenticated and says
// why in libsaga's words.
func (k *Keys) Verify(topic string, msgKey, value, sig []byte) error {
	if sig == nil {
		return fmt.Errorf("%w: unsigned: no %s header", ErrUnauthenticated, SignatureHeader)
	}
	if len(sig) != 67 || string(sig[:3]) != "v1=" {
		return fmt.Errorf("%w: %s header of %d bytes is not \"v1=\" and 64 hex digits",
			ErrUnauthenticated, SignatureHeader, len(sig))
	}
	want, err := hex.DecodeString(string(sig[3:]))
	if err != nil {
		return fmt.Errorf("%w: %s header is not \"v1=\" and 64 hex digits", ErrUnauthenticated, SignatureHeader)
	}
	for _, key := range k.keys {
		if hmac.Equal(mac(key, topic, msgKey, value), want) {
			return nil
		}
	}
	return fmt.Errorf("%w: bad signature: made by none of the %d key(s) for topic %s",
		ErrUnauthenticated, len(k.keys), topic)
}
