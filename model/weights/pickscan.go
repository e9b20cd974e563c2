package weights

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Argument kinds of pickle opcodes, as in Python's pickletools.
const (
	argNone  = iota
	argFixed // a fixed number of bytes
	argLine  // bytes up to a newline
	argLine2 // two newline-terminated lines (GLOBAL, INST)
	argLen1  // 1-byte length then that many bytes
	argLen4  // 4-byte little-endian length then that many bytes
	argLen8  // 8-byte little-endian length then that many bytes
)

type pickleOp struct {
	kind  int
	fixed int
}

// pickleOps describes every opcode of pickle protocols 0 to 5.
var pickleOps = func() map[byte]pickleOp {
	m := map[byte]pickleOp{}
	for _, c := range []byte("(.012NaebdlostuR)]}Q\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x97\x98") {
		m[c] = pickleOp{kind: argNone}
	}
	for c, n := range map[byte]int{'K': 1, 'M': 2, 'J': 4, 'G': 8, 'h': 1, 'j': 4, 'q': 1, 'r': 4, 0x80: 1, 0x82: 1, 0x83: 2, 0x84: 4, 0x95: 8} {
		m[c] = pickleOp{kind: argFixed, fixed: n}
	}
	for _, c := range []byte("ILFSVPgp") {
		m[c] = pickleOp{kind: argLine}
	}
	m['c'], m['i'] = pickleOp{kind: argLine2}, pickleOp{kind: argLine2}
	for _, c := range []byte{'U', 'C', 0x8c, 0x8a} {
		m[c] = pickleOp{kind: argLen1}
	}
	for _, c := range []byte{'T', 'X', 'B', 0x8b} {
		m[c] = pickleOp{kind: argLen4}
	}
	for _, c := range []byte{0x8d, 0x8e, 0x96} {
		m[c] = pickleOp{kind: argLen8}
	}
	return m
}()

// scanPickle walks the opcodes of a pickle program and checks that each is
// known, that every length and frame size fits in the bytes that remain, and
// that the program ends with STOP. It never allocates in proportion to a
// declared length, so the unpickler can then run on it with memory bounded
// by the program's size.
func scanPickle(p []byte) error {
	for i := 0; i < len(p); {
		c := p[i]
		i++
		op, ok := pickleOps[c]
		if !ok {
			return fmt.Errorf("unknown opcode 0x%02x at byte %d", c, i-1)
		}
		rest := uint64(len(p) - i)
		need := uint64(0)
		switch op.kind {
		case argFixed:
			need = uint64(op.fixed)
			if c == 0x95 && rest >= 8 && binary.LittleEndian.Uint64(p[i:]) > rest-8 { // FRAME
				return fmt.Errorf("frame at byte %d longer than the program", i-1)
			}
		case argLine, argLine2:
			lines := 1
			if op.kind == argLine2 {
				lines = 2
			}
			for ; lines > 0; lines-- {
				nl := bytes.IndexByte(p[i:], '\n')
				if nl < 0 {
					return fmt.Errorf("unterminated line argument at byte %d", i)
				}
				i += nl + 1
			}
			continue
		case argLen1, argLen4, argLen8:
			w := map[int]uint64{argLen1: 1, argLen4: 4, argLen8: 8}[op.kind]
			if rest < w {
				return fmt.Errorf("truncated length at byte %d", i)
			}
			var n uint64
			switch w {
			case 1:
				n = uint64(p[i])
			case 4:
				n = uint64(binary.LittleEndian.Uint32(p[i:]))
				if c == 'T' && n >= 1<<31 { // BINSTRING's length is signed
					return fmt.Errorf("negative length at byte %d", i)
				}
			default:
				n = binary.LittleEndian.Uint64(p[i:])
			}
			if n > rest-w {
				return fmt.Errorf("length %d at byte %d past the end of the program", n, i)
			}
			need = w + n
		}
		if need > rest {
			return fmt.Errorf("truncated argument of opcode 0x%02x at byte %d", c, i-1)
		}
		i += int(need)
		if c == '.' {
			return nil
		}
	}
	return errors.New("no STOP opcode")
}
