package crdt

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strconv"
)

// This file decodes the operations of an Automerge change (the columnar
// change format of the Automerge binary format specification) far enough
// to know which map keys of which objects it writes, and with what value.
// The projections need that to show conflicts and provenance, and
// automerge-go exposes neither a change's operations nor a key's
// conflicting values.

// op is one decoded operation.
type op struct {
	ctr      uint64 // the operation's own counter (startOp + index)
	objCtr   uint64 // 0 with objActor "" for the root
	objActor string
	key      string // map key; "" with elem true for list/text positions
	elem     bool
	action   uint64
	value    string // encoded as in Flat, for set
}

// Operation actions.
const (
	actMakeMap   = 0
	actSet       = 1
	actMakeList  = 2
	actDel       = 3
	actMakeText  = 4
	actInc       = 5
	actMakeTable = 6
)

// Column specifications (column id << 4 | type).
const (
	colObjActor = 0<<4 | 1
	colObjCtr   = 0<<4 | 2
	colKeyActor = 1<<4 | 1
	colKeyCtr   = 1<<4 | 3
	colKeyStr   = 1<<4 | 5
	colInsert   = 3<<4 | 4
	colAction   = 4<<4 | 2
	colValMeta  = 5<<4 | 6
	colValRaw   = 5<<4 | 7
	deflateBit  = 8
)

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("change: bad %s", what)
	}
}

func (r *reader) uleb(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n, err := uleb(r.b)
	if err != nil {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) sleb(what string) int64 {
	if r.err != nil {
		return 0
	}
	var v int64
	var shift uint
	for i := 0; i < len(r.b) && i < 10; i++ {
		c := r.b[i]
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			r.b = r.b[i+1:]
			return v
		}
	}
	r.fail(what)
	return 0
}

func (r *reader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(what)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// rle decodes an RLE column of uLEB (or, with str, length-prefixed
// string) values; null runs give ok=false.
type rle struct {
	r       reader
	str     bool
	signed  bool
	run     int64 // >0 repeat, <0 literals left, 0 with nulls>0 null run
	nulls   uint64
	val     string
	num     int64
	started bool
}

func (c *rle) readVal() {
	if c.str {
		n := c.r.uleb("string length")
		c.val = string(c.r.bytes(n, "string"))
	} else if c.signed {
		c.num = c.r.sleb("value")
	} else {
		c.num = int64(c.r.uleb("value"))
	}
}

// next returns the next value; done when the column is exhausted.
func (c *rle) next() (s string, n int64, ok, done bool) {
	for {
		if c.r.err != nil {
			return "", 0, false, true
		}
		switch {
		case c.nulls > 0:
			c.nulls--
			return "", 0, false, false
		case c.run > 0:
			c.run--
			return c.val, c.num, true, false
		case c.run < 0:
			c.run++
			c.readVal()
			return c.val, c.num, true, false
		}
		if len(c.r.b) == 0 {
			return "", 0, false, true
		}
		k := c.r.sleb("run length")
		switch {
		case k > 0:
			c.readVal()
			c.run = k - 1
			return c.val, c.num, true, false
		case k < 0:
			c.run = k
		default:
			c.nulls = c.r.uleb("null run")
			if c.nulls == 0 {
				c.r.fail("empty null run")
			}
		}
	}
}

type boolCol struct {
	r     reader
	cur   bool
	left  uint64
	first bool
}

func (c *boolCol) next() bool {
	for c.left == 0 {
		if len(c.r.b) == 0 {
			return false
		}
		if c.first {
			c.cur = !c.cur
		}
		c.first = true
		c.left = c.r.uleb("boolean run")
		if c.r.err != nil {
			return false
		}
	}
	c.left--
	return c.cur
}

// decodeOps parses the operations of one uncompressed change body.
func decodeOps(body []byte) (actor string, ops []op, err error) {
	r := &reader{b: body}
	nd := r.uleb("deps")
	r.bytes(nd*32, "deps")
	actor = hex.EncodeToString(r.bytes(r.uleb("actor length"), "actor"))
	r.uleb("seq")
	startOp := r.uleb("start op")
	r.sleb("time")
	r.bytes(r.uleb("message length"), "message")
	actors := []string{actor}
	na := r.uleb("other actors")
	if na > 1024 {
		r.fail("other actors")
	}
	for i := uint64(0); i < na && r.err == nil; i++ {
		actors = append(actors, hex.EncodeToString(r.bytes(r.uleb("actor length"), "actor")))
	}
	nc := r.uleb("columns")
	if nc > 64 {
		r.fail("column count")
	}
	type colMeta struct {
		spec uint64
		n    uint64
	}
	var metas []colMeta
	for i := uint64(0); i < nc && r.err == nil; i++ {
		metas = append(metas, colMeta{r.uleb("column spec"), r.uleb("column length")})
	}
	cols := map[uint64][]byte{}
	for _, m := range metas {
		data := r.bytes(m.n, "column data")
		if m.spec&deflateBit != 0 {
			inflated, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), maxChangeBody+1))
			if err != nil || len(inflated) > maxChangeBody {
				return "", nil, fmt.Errorf("change: bad compressed column")
			}
			data = inflated
		}
		cols[m.spec&^deflateBit] = data
	}
	if r.err != nil {
		return "", nil, r.err
	}
	objActor := &rle{r: reader{b: cols[colObjActor]}}
	objCtr := &rle{r: reader{b: cols[colObjCtr]}}
	keyActor := &rle{r: reader{b: cols[colKeyActor]}}
	keyCtr := &rle{r: reader{b: cols[colKeyCtr]}, signed: true}
	keyStr := &rle{r: reader{b: cols[colKeyStr]}, str: true}
	insert := &boolCol{r: reader{b: cols[colInsert]}}
	action := &rle{r: reader{b: cols[colAction]}}
	valMeta := &rle{r: reader{b: cols[colValMeta]}}
	valRaw := &reader{b: cols[colValRaw]}
	for i := uint64(0); ; i++ {
		_, act, ok, done := action.next()
		if done {
			break
		}
		if !ok || i > 1<<20 {
			return "", nil, fmt.Errorf("change: bad action column")
		}
		o := op{ctr: startOp + i, action: uint64(act)}
		_, oa, oaok, _ := objActor.next()
		_, oc, ocok, _ := objCtr.next()
		if oaok != ocok {
			return "", nil, fmt.Errorf("change: bad object column")
		}
		if oaok {
			if oa < 0 || oa >= int64(len(actors)) {
				return "", nil, fmt.Errorf("change: object actor out of range")
			}
			o.objActor, o.objCtr = actors[oa], uint64(oc)
		}
		keyActor.next()
		keyCtr.next()
		ks, _, ksok, _ := keyStr.next()
		if ksok {
			o.key = ks
		} else {
			o.elem = true
		}
		insert.next()
		_, meta, metaok, _ := valMeta.next()
		if !metaok {
			meta = 0
		}
		raw := valRaw.bytes(uint64(meta)>>4, "value")
		if valRaw.err != nil {
			return "", nil, valRaw.err
		}
		o.value = encodeRaw(uint64(meta)&0xf, raw)
		ops = append(ops, o)
	}
	for _, c := range []*rle{objActor, objCtr, keyActor, keyCtr, keyStr, action, valMeta} {
		if c.r.err != nil {
			return "", nil, c.r.err
		}
	}
	if insert.r.err != nil {
		return "", nil, insert.r.err
	}
	return actor, ops, nil
}

// encodeRaw encodes a raw value the way encodeValue encodes a read one.
func encodeRaw(typ uint64, raw []byte) string {
	r := &reader{b: raw}
	switch typ {
	case 0:
		return "n:"
	case 1:
		return "b:false"
	case 2:
		return "b:true"
	case 3:
		return "u:" + strconv.FormatUint(r.uleb("uint"), 10)
	case 4:
		return "i:" + strconv.FormatInt(r.sleb("int"), 10)
	case 5:
		if len(raw) != 8 {
			return "?:"
		}
		return "f:" + strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(raw)), 'g', -1, 64)
	case 6:
		return "s:" + string(raw)
	case 7:
		return "x:" + hex.EncodeToString(raw)
	case 8:
		return "c:" + strconv.FormatInt(r.sleb("counter"), 10)
	case 9:
		return "t:" + strconv.FormatInt(r.sleb("timestamp"), 10)
	}
	return "?:"
}
