package score

import (
	"fmt"
	"io"
	"strings"
)

// Report is the result of a run: the totals the paper reports, every
// image's scores and judge transcript, and the settings that produced them.
type Report struct {
	Total Total `json:"total"`
	// Unscored counts the references with no prediction: the paper's
	// numbers average over every reference image.
	Unscored int           `json:"unscored_references"`
	Settings Settings      `json:"settings"`
	Images   []ImageResult `json:"images"`
}

// Settings record what a report was computed with.
type Settings struct {
	JudgeModel      string `json:"judge_model"`
	EmbeddingsModel string `json:"embeddings_model"`
	Sampling        string `json:"sampling"`
	MaxTokens       int    `json:"max_tokens"`
	WordNet         string `json:"wordnet"`
}

// WriteMarkdown writes the totals and a row per image as markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	t := r.Total
	fmt.Fprintf(&b, "## PancapScore: %.2f\n\n", t.PancapScore)
	fmt.Fprintf(&b, "%d images scored", t.Images)
	if r.Unscored > 0 {
		fmt.Fprintf(&b, ", %d references without a prediction (not comparable with the paper's table)", r.Unscored)
	}
	fmt.Fprintf(&b, "; judge %s (%s), embeddings %s.\n\n", r.Settings.JudgeModel, r.Settings.Sampling, r.Settings.EmbeddingsModel)
	b.WriteString("| | precision | recall | F1 |\n|---|---:|---:|---:|\n")
	for _, d := range t.all() {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f |\n", d.Name, d.PRF.Precision, d.PRF.Recall, d.PRF.F1)
	}
	b.WriteString("\nPer image (F1 ×100):\n\n")
	b.WriteString("| image | tag | location | attribute | relation | global | PancapScore | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, im := range r.Images {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", cell(im.Image),
			100*im.Tag.F1, 100*im.Location.F1, 100*im.Attribute.F1, 100*im.Relation.F1, 100*im.Global.F1,
			100*im.PancapScore, cell(strings.Join(im.Notes, "; ")))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell escapes text for a markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
