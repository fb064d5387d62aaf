// Package canon owns sublog's one CBOR dialect: RFC 8949 core deterministic
// encoding, and a strict decoder that refuses duplicate map keys, indefinite
// lengths, tags, invalid UTF-8 and anything that does not re-encode to the
// exact same bytes (non-shortest integers, lengths or floats, unsorted maps).
// Every decoder of untrusted bytes in sublog goes through Check or Unmarshal.
// It is a leaf package.
package canon

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Limits applied to every decode. Cards are at most 64 KiB, so these are
// generous for them and still bound the work an attacker can ask for.
// MaxNesting counts from the outermost item of what is decoded: a card's
// limit counts its payload and body together (log/card), so an encoder
// that wants what it writes to be readable checks the whole item it signs.
const (
	MaxNesting  = 16
	MaxElements = 8192
)

// Errors: each rejection reason has its own sentinel so callers and golden
// vectors can tell them apart.
var (
	ErrMalformed    = errors.New("cbor: malformed")
	ErrDuplicateKey = errors.New("cbor: duplicate map key")
	ErrIndefinite   = errors.New("cbor: indefinite length")
	ErrTag          = errors.New("cbor: tag not allowed")
	ErrNonCanonical = errors.New("cbor: not the deterministic encoding")
	ErrTooDeep      = errors.New("cbor: nesting or size limit exceeded")
	ErrUnknownField = errors.New("cbor: unknown field")
	ErrTrailing     = errors.New("cbor: trailing bytes")
	ErrNotFinite    = errors.New("cbor: NaN or infinite float")
)

var (
	encMode cbor.UserBufferEncMode
	decMode cbor.DecMode
	// anyMode decodes into interface{} values for the canonical check.
	anyMode cbor.DecMode
)

func init() {
	var err error
	eo := cbor.CoreDetEncOptions()
	eo.Time = cbor.TimeUnix
	eo.BigIntConvert = cbor.BigIntConvertShortest
	if encMode, err = eo.UserBufferEncMode(); err != nil {
		panic(err)
	}
	do := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   MaxNesting,
		MaxArrayElements:  MaxElements,
		MaxMapPairs:       MaxElements,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		DefaultMapType:    nil,
		BigIntDec:         cbor.BigIntDecodeValue,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		SimpleValues:      simpleValues(),
		// NaN and infinities have no JSON or YAML form and no meaning in
		// sublog data; refusing them here refuses them everywhere.
		NaN: cbor.NaNDecodeForbidden,
		Inf: cbor.InfDecodeForbidden,
	}
	if decMode, err = do.DecMode(); err != nil {
		panic(err)
	}
	ao := do
	ao.ExtraReturnErrors = cbor.ExtraDecErrorNone
	if anyMode, err = ao.DecMode(); err != nil {
		panic(err)
	}
}

// simpleValues allows only false, true and null: undefined and unassigned
// simple values have no meaning in sublog data.
func simpleValues() *cbor.SimpleValueRegistry {
	r, err := cbor.NewSimpleValueRegistryFromDefaults(
		cbor.WithRejectedSimpleValue(23), // undefined
	)
	if err != nil {
		panic(err)
	}
	return r
}

// Marshal encodes v deterministically.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// MustMarshal is Marshal for values built by sublog itself, whose encoding
// cannot fail; a failure is a programming error.
func MustMarshal(v any) []byte {
	b, err := encMode.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("canon: marshal %T: %v", v, err))
	}
	return b
}

// Check reports whether b is exactly one well-formed data item in the
// deterministic encoding, within the limits.
func Check(b []byte) error {
	if fastCheck(b) {
		return nil
	}
	return check(b)
}

// check is Check's general path: decode into generic values, re-encode
// deterministically, compare.
func check(b []byte) error {
	var v any
	rest, err := anyMode.UnmarshalFirst(b, &v)
	if err != nil {
		return classify(err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after the item", ErrTrailing, len(rest))
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(again, b) {
		return fmt.Errorf("%w: %d bytes re-encode to %d different bytes", ErrNonCanonical, len(b), len(again))
	}
	return nil
}

// Unmarshal checks b with Check and then decodes it into v, refusing fields v
// does not declare. This is the only way sublog decodes untrusted CBOR.
func Unmarshal(b []byte, v any) error {
	if err := Check(b); err != nil {
		return err
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return classify(err)
	}
	return nil
}

// UnmarshalExact decodes b into v strictly and then re-encodes v and
// compares: the same guarantees as Unmarshal with one decode instead of two,
// for struct types whose fields hold what they decode without loss. A
// cbor.RawMessage field is re-encoded verbatim, so the caller must Check its
// bytes; an empty value in an omitempty field comes back absent and is
// therefore refused as non-canonical.
func UnmarshalExact(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return classify(err)
	}
	buf := bufs.Get().(*bytes.Buffer)
	defer func() { buf.Reset(); bufs.Put(buf) }()
	if err := encMode.MarshalToBuffer(v, buf); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(buf.Bytes(), b) {
		return fmt.Errorf("%w: %d bytes re-encode to %d different bytes", ErrNonCanonical, len(b), buf.Len())
	}
	return nil
}

var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// classify maps the library's errors to this package's sentinels, keeping the
// library's message for the human.
func classify(err error) error {
	var (
		dup     *cbor.DupMapKeyError
		indef   *cbor.IndefiniteLengthError
		tags    *cbor.TagsMdError
		unknown *cbor.UnknownFieldError
		nested  *cbor.MaxNestedLevelError
		arr     *cbor.MaxArrayElementsError
		mp      *cbor.MaxMapPairsError
		extra   *cbor.ExtraneousDataError
		unacc   *cbor.UnacceptableDataItemError
	)
	switch {
	case errors.As(err, &dup):
		return fmt.Errorf("%w: %v", ErrDuplicateKey, err)
	case errors.As(err, &indef):
		return fmt.Errorf("%w: %v", ErrIndefinite, err)
	case errors.As(err, &tags):
		return fmt.Errorf("%w: %v", ErrTag, err)
	case errors.As(err, &unknown):
		return fmt.Errorf("%w: %v", ErrUnknownField, err)
	case errors.As(err, &unacc) && strings.HasPrefix(unacc.Message, "floating-point"):
		return fmt.Errorf("%w: %v", ErrNotFinite, err)
	case errors.As(err, &extra):
		return fmt.Errorf("%w: %v", ErrTrailing, err)
	case errors.As(err, &nested), errors.As(err, &arr), errors.As(err, &mp):
		return fmt.Errorf("%w: %v", ErrTooDeep, err)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}
