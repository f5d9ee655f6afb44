package resume

import "unsafe"

// argBox hands out the SQL arguments of a multi-row INSERT as interface
// values that point into two slices it owns, instead of boxing each
// int64 and []byte on its own: that was an allocation per value, three or
// four per record, more than everything else an edge-mode frame costs.
// A value must not be used after the next reset.
type argBox struct {
	ints  []int64
	blobs [][]byte
}

// eface is the layout of an interface value with no methods.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

var (
	int64Type = typeOf(int64(0))
	bytesType = typeOf([]byte(nil))
)

func typeOf(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

// reset empties the box for the next statement, keeping capacity for n
// ints and n blobs.
func (b *argBox) reset(n int) {
	if cap(b.ints) < n {
		b.ints = make([]int64, 0, n)
		b.blobs = make([][]byte, 0, n)
	}
	clear(b.blobs)
	b.ints, b.blobs = b.ints[:0], b.blobs[:0]
}

// int64 returns v as an interface value. The capacity given to reset must
// not be exceeded: the values handed out point into the slice.
func (b *argBox) int64(v int64) any {
	if len(b.ints) == cap(b.ints) {
		return v
	}
	b.ints = append(b.ints, v)
	var out any
	e := (*eface)(unsafe.Pointer(&out))
	e.typ, e.data = int64Type, unsafe.Pointer(&b.ints[len(b.ints)-1])
	return out
}

// bytes returns v as an interface value (see int64).
func (b *argBox) bytes(v []byte) any {
	if len(b.blobs) == cap(b.blobs) {
		return v
	}
	b.blobs = append(b.blobs, v)
	var out any
	e := (*eface)(unsafe.Pointer(&out))
	e.typ, e.data = bytesType, unsafe.Pointer(&b.blobs[len(b.blobs)-1])
	return out
}
