package score

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// maxInputBytes bounds a predictions or references file.
const maxInputBytes = 1 << 30

// Caption is one image's caption read from a predictions or references
// file.
type Caption struct {
	// Image is the image's key: the last three elements of its path
	// ("sam/sa_000045/sa_507752.jpg"), as the authors key images.
	Image string
	Text  string
	// Width and Height are the image's size when the file gives it (the
	// model's inline boxes cannot be converted without it).
	Width, Height int
}

// captionRecord is every field name a caption record may use: `pancap
// caption --json` (image, width, height, caption), the authors' caption
// files (image_path with model_response or gt_response) and their raw
// per-image answers (image, text).
type captionRecord struct {
	Image         string  `json:"image"`
	ImagePath     string  `json:"image_path"`
	Caption       *string `json:"caption"`
	ModelResponse *string `json:"model_response"`
	GTResponse    *string `json:"gt_response"`
	Text          *string `json:"text"`
	Width         int     `json:"width"`
	Height        int     `json:"height"`
}

// ImageKey is the authors' key of an image path: its last three
// "/"-separated elements.
func ImageKey(path string) string {
	parts := strings.Split(path, "/")
	if len(parts) > 3 {
		parts = parts[len(parts)-3:]
	}
	return strings.Join(parts, "/")
}

// ReadCaptions reads a JSON array or JSON lines of caption records. Every
// record needs an image path and exactly one caption field; a repeated
// image is an error.
func ReadCaptions(r io.Reader) ([]Caption, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInputBytes {
		return nil, fmt.Errorf("score: caption file over %d bytes", maxInputBytes)
	}
	var recs []captionRecord
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &recs); err != nil {
			return nil, fmt.Errorf("score: caption file: %w", err)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, maxInputBytes)
		for n := 1; sc.Scan(); n++ {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var rec captionRecord
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				return nil, fmt.Errorf("score: caption file line %d: %w", n, err)
			}
			recs = append(recs, rec)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("score: caption file: %w", err)
		}
	}
	out := make([]Caption, 0, len(recs))
	seen := map[string]bool{}
	for i, rec := range recs {
		c, err := rec.caption()
		if err != nil {
			return nil, fmt.Errorf("score: caption record %d: %w", i+1, err)
		}
		if seen[c.Image] {
			return nil, fmt.Errorf("score: caption record %d: image %q again", i+1, c.Image)
		}
		seen[c.Image] = true
		out = append(out, c)
	}
	return out, nil
}

func (r captionRecord) caption() (Caption, error) {
	path := r.ImagePath
	if path == "" {
		path = r.Image
	}
	if path == "" {
		return Caption{}, fmt.Errorf("no image or image_path")
	}
	var text *string
	for _, t := range []*string{r.Caption, r.ModelResponse, r.GTResponse, r.Text} {
		if t != nil {
			if text != nil {
				return Caption{}, fmt.Errorf("%s: more than one of caption, model_response, gt_response, text", path)
			}
			text = t
		}
	}
	if text == nil {
		return Caption{}, fmt.Errorf("%s: no caption, model_response, gt_response or text", path)
	}
	if r.Width < 0 || r.Height < 0 {
		return Caption{}, fmt.Errorf("%s: negative image size", path)
	}
	return Caption{Image: ImageKey(path), Text: *text, Width: r.Width, Height: r.Height}, nil
}

// Pair joins predictions to references by image. Each prediction needs a
// reference, and its inline model boxes are converted to the reference
// format (which needs the image size); the count of references without a
// prediction is returned, as the paper's numbers average over all of them.
func Pair(preds, refs []Caption) (items []Item, unscored int, err error) {
	byImage := make(map[string]string, len(refs))
	for _, r := range refs {
		byImage[r.Image] = r.Text
	}
	for _, p := range preds {
		ref, ok := byImage[p.Image]
		if !ok {
			return nil, 0, fmt.Errorf("score: no reference caption for %s", p.Image)
		}
		text := p.Text
		if modelBoxRe.MatchString(text) {
			if text, err = ConvertBoxes(text, p.Width, p.Height); err != nil {
				return nil, 0, fmt.Errorf("%s: %w (the prediction's boxes need width and height)", p.Image, err)
			}
		}
		items = append(items, Item{Image: p.Image, Pred: text, Ref: ref})
	}
	return items, len(refs) - len(items), nil
}
