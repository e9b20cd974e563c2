package tokenizer

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Sentinel errors. Every error returned by Load and Parse wraps one of them.
var (
	// ErrInvalidModel reports a tokenizer.model that is not a well-formed
	// SentencePiece ModelProto.
	ErrInvalidModel = errors.New("tokenizer: invalid sentencepiece model")
	// ErrUnsupported reports a well-formed model that uses a feature this
	// package does not implement (a non-BPE model, a normalisation charsmap,
	// whitespace as suffix).
	ErrUnsupported = errors.New("tokenizer: unsupported sentencepiece model")
)

// PieceType is the type of a vocabulary entry (ModelProto.SentencePiece.Type).
type PieceType int32

// The piece types of sentencepiece_model.proto.
const (
	Normal      PieceType = 1 // an ordinary subword
	Unknown     PieceType = 2 // the <unk> piece
	Control     PieceType = 3 // <s>, </s> and other invisible control symbols
	UserDefined PieceType = 4 // a symbol matched verbatim in the input
	Unused      PieceType = 5 // a merge intermediate that is never emitted
	Byte        PieceType = 6 // a byte-fallback piece <0xNN>
)

// ModelType is TrainerSpec.model_type.
type ModelType int32

// The model types of sentencepiece_model.proto.
const (
	Unigram ModelType = 1 // unigram language model
	BPE     ModelType = 2 // byte-pair encoding (LLaMA)
	Word    ModelType = 3 // whitespace-delimited words
	Char    ModelType = 4 // characters
)

// Piece is one vocabulary entry.
type Piece struct {
	Text  string    // the piece, with U+2581 "▁" standing for a space
	Score float32   // merge priority for BPE: higher merges first
	Type  PieceType // Normal, Byte, Control, …
}

// Model is the part of a SentencePiece ModelProto that tokenisation uses.
// Fields absent from the file hold the proto2 defaults of
// sentencepiece_model.proto.
type Model struct {
	Pieces []Piece // indexed by token id

	// TrainerSpec.
	ModelType               ModelType
	ByteFallback            bool
	TreatWhitespaceAsSuffix bool
	UnkID, BosID, EosID     int32
	PadID                   int32 // -1 when the model has no padding piece
	UnkSurface              string

	// NormalizerSpec.
	NormalizerName         string
	CharsMap               []byte // precompiled normalisation rules; empty for LLaMA
	AddDummyPrefix         bool
	RemoveExtraWhitespaces bool
	EscapeWhitespaces      bool
}

// ModelProto, TrainerSpec, NormalizerSpec and SentencePiece field numbers.
const (
	fieldPieces         = 1
	fieldTrainerSpec    = 2
	fieldNormalizerSpec = 3

	fieldPieceText  = 1
	fieldPieceScore = 2
	fieldPieceType  = 3

	fieldModelType               = 3
	fieldTreatWhitespaceAsSuffix = 24
	fieldByteFallback            = 35
	fieldUnkID                   = 40
	fieldBosID                   = 41
	fieldEosID                   = 42
	fieldPadID                   = 43
	fieldUnkSurface              = 44

	fieldNormName          = 1
	fieldCharsMap          = 2
	fieldAddDummyPrefix    = 3
	fieldRemoveExtraSpaces = 4
	fieldEscapeWhitespaces = 5
)

// ParseModel decodes a serialised SentencePiece ModelProto. It checks the
// wire format and the invariants sentencepiece itself checks at load time
// (non-empty unique pieces, exactly one <unk>, well-formed byte pieces).
func ParseModel(data []byte) (*Model, error) {
	m := &Model{
		ModelType:              Unigram,
		UnkID:                  0,
		BosID:                  1,
		EosID:                  2,
		PadID:                  -1,
		UnkSurface:             " \u2047 ",
		AddDummyPrefix:         true,
		RemoveExtraWhitespaces: true,
		EscapeWhitespaces:      true,
	}
	err := walk(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == fieldPieces && typ == protowire.BytesType:
			p, err := parsePiece(b)
			if err != nil {
				return err
			}
			m.Pieces = append(m.Pieces, p)
		case num == fieldTrainerSpec && typ == protowire.BytesType:
			return walk(b, m.trainerField)
		case num == fieldNormalizerSpec && typ == protowire.BytesType:
			return walk(b, m.normalizerField)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// trainerField stores one TrainerSpec field.
func (m *Model) trainerField(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
	if typ == protowire.VarintType {
		switch num {
		case fieldModelType:
			m.ModelType = ModelType(int32(v))
		case fieldTreatWhitespaceAsSuffix:
			m.TreatWhitespaceAsSuffix = v != 0
		case fieldByteFallback:
			m.ByteFallback = v != 0
		case fieldUnkID:
			m.UnkID = int32(v)
		case fieldBosID:
			m.BosID = int32(v)
		case fieldEosID:
			m.EosID = int32(v)
		case fieldPadID:
			m.PadID = int32(v)
		}
	}
	if typ == protowire.BytesType && num == fieldUnkSurface {
		m.UnkSurface = string(b)
	}
	return nil
}

// normalizerField stores one NormalizerSpec field.
func (m *Model) normalizerField(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
	switch {
	case typ == protowire.BytesType && num == fieldNormName:
		m.NormalizerName = string(b)
	case typ == protowire.BytesType && num == fieldCharsMap:
		m.CharsMap = append([]byte(nil), b...)
	case typ == protowire.VarintType && num == fieldAddDummyPrefix:
		m.AddDummyPrefix = v != 0
	case typ == protowire.VarintType && num == fieldRemoveExtraSpaces:
		m.RemoveExtraWhitespaces = v != 0
	case typ == protowire.VarintType && num == fieldEscapeWhitespaces:
		m.EscapeWhitespaces = v != 0
	}
	return nil
}

// parsePiece decodes one ModelProto.SentencePiece message.
func parsePiece(data []byte) (Piece, error) {
	p := Piece{Type: Normal}
	err := walk(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == fieldPieceText && typ == protowire.BytesType:
			p.Text = string(b)
		case num == fieldPieceScore && typ == protowire.Fixed32Type:
			p.Score = math.Float32frombits(uint32(v))
		case num == fieldPieceType && typ == protowire.VarintType:
			p.Type = PieceType(int32(v))
		}
		return nil
	})
	return p, err
}

// walk calls fn for every field of a serialised message. Varint and fixed
// values arrive in v, length-delimited ones in b; groups are skipped.
func walk(data []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("%w: bad tag: %v", ErrInvalidModel, protowire.ParseError(n))
		}
		data = data[n:]
		var v uint64
		var b []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(data)
		case protowire.Fixed32Type:
			var v32 uint32
			v32, n = protowire.ConsumeFixed32(data)
			v = uint64(v32)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(data)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrInvalidModel, num, protowire.ParseError(n))
		}
		data = data[n:]
		if err := fn(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}

// validate checks what sentencepiece checks when it loads a model and what
// this package relies on.
func (m *Model) validate() error {
	if len(m.Pieces) == 0 {
		return fmt.Errorf("%w: no pieces", ErrInvalidModel)
	}
	if len(m.Pieces) > math.MaxInt32 {
		return fmt.Errorf("%w: %d pieces", ErrInvalidModel, len(m.Pieces))
	}
	seen := make(map[string]bool, len(m.Pieces))
	unk := -1
	for i, p := range m.Pieces {
		switch {
		case p.Text == "":
			return fmt.Errorf("%w: piece %d is empty", ErrInvalidModel, i)
		case seen[p.Text]:
			return fmt.Errorf("%w: piece %d %q is defined twice", ErrInvalidModel, i, p.Text)
		case p.Type < Normal || p.Type > Byte:
			return fmt.Errorf("%w: piece %d has type %d", ErrInvalidModel, i, p.Type)
		}
		seen[p.Text] = true
		if p.Type == Unknown {
			if unk >= 0 {
				return fmt.Errorf("%w: <unk> defined at %d and %d", ErrInvalidModel, unk, i)
			}
			unk = i
		}
		if p.Type == Byte {
			if !m.ByteFallback {
				return fmt.Errorf("%w: byte piece %q without byte_fallback", ErrInvalidModel, p.Text)
			}
			if _, ok := pieceByte(p.Text); !ok {
				return fmt.Errorf("%w: malformed byte piece %q", ErrInvalidModel, p.Text)
			}
		}
	}
	if unk < 0 {
		return fmt.Errorf("%w: no <unk> piece", ErrInvalidModel)
	}
	if int(m.UnkID) != unk {
		return fmt.Errorf("%w: unk_id %d but <unk> is piece %d", ErrInvalidModel, m.UnkID, unk)
	}
	for _, id := range []int32{m.BosID, m.EosID} {
		if id >= int32(len(m.Pieces)) || (id >= 0 && m.Pieces[id].Type != Control) {
			return fmt.Errorf("%w: special id %d is not a control piece", ErrInvalidModel, id)
		}
	}
	switch {
	case m.ModelType != BPE:
		return fmt.Errorf("%w: model type %d (only BPE is implemented)", ErrUnsupported, m.ModelType)
	case len(m.CharsMap) > 0:
		return fmt.Errorf("%w: normaliser %q with a precompiled charsmap", ErrUnsupported, m.NormalizerName)
	case m.TreatWhitespaceAsSuffix:
		return fmt.Errorf("%w: treat_whitespace_as_suffix", ErrUnsupported)
	}
	return nil
}

// pieceByte returns the byte of a "<0xNN>" piece (upper-case hex, as
// sentencepiece writes and requires).
func pieceByte(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(s[3])
	lo, ok2 := hexDigit(s[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
