// Package score computes PancapScore, the panoptic captioning metric of
// the Pancap paper, as the authors' released code computes it
// (Visual-AI/Pancap, pancapscore/ and scripts_llmjudge/ at commit b8012a4):
// a judge LLM extracts "ID | Type -->> Tuple" lines from each caption and
// turns them into yes/no question pairs; entities are matched one to one
// (same name, WordNet noun synonyms, name-embedding similarity, box IoU);
// each caption answers the other's questions; PancapScore is the tag,
// location, attribute and relation F1 plus a tenth of the global F1, ×100.
//
// The judge and the embedding model are reached through the Judge and
// Embedder interfaces (score/judge speaks the OpenAI-compatible HTTP API);
// everything else (parsing the judge's lines, the matching, the question
// remapping, the answer tally, the averages) is deterministic and follows
// the authors' Python line by line, including its quirks, which
// tools/reference/pancapscore.py checks.
package score

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"
)

// The authors' prompts, byte for byte (see prompts/README.md).
var (
	//go:embed prompts/extract.txt
	extractPrompt string
	//go:embed prompts/questions.txt
	questionsPrompt string
	//go:embed prompts/answers.txt
	answersPrompt string
)

// SystemPrompt is the system message of every judge request: Qwen2.5's
// default, which the authors' scripts send explicitly.
const SystemPrompt = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

// fill is Python's template.format(args...) for a template whose only
// braces are "{}" places.
func fill(template string, args ...string) string {
	parts := strings.Split(template, "{}")
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(p)
		if i < len(args) {
			b.WriteString(args[i])
		}
	}
	return b.String()
}

// ExtractPrompt asks the judge for the content lines of a caption.
func ExtractPrompt(caption string) string { return fill(extractPrompt, caption) }

// QuestionsPrompt asks the judge to turn a caption's content lines into
// question pairs.
func QuestionsPrompt(caption, content string) string {
	return fill(questionsPrompt, caption, content)
}

// AnswersPrompt asks the judge to answer question lines from a caption.
func AnswersPrompt(caption, questions string) string {
	return fill(answersPrompt, caption, questions)
}

// Judge runs one judge request: the user message prompt after
// SystemPrompt; it returns the judge's reply.
type Judge interface {
	Complete(ctx context.Context, prompt string) (string, error)
}

// Embedder returns an embedding per text (all-mpnet-base-v2 in the paper).
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// Scorer scores prediction captions against reference captions.
type Scorer struct {
	Judge    Judge
	Embedder Embedder
	WordNet  Synonyms
}

// Item is one image to score: its key, the prediction caption with boxes
// already in the reference format (see ConvertBoxes) and the reference.
type Item struct {
	Image, Pred, Ref string
}

// Transcript is every judge reply of one image: the inputs of the
// deterministic part, kept in the report so a score can be recomputed.
type Transcript struct {
	RefContent    string `json:"ref_content"`
	RefQuestions  string `json:"ref_questions"`
	PredContent   string `json:"pred_content"`
	PredQuestions string `json:"pred_questions"`
	// RefQuestionsForPred are the reference's questions in the
	// prediction's entity IDs, PredAnswers the prediction's answers.
	RefQuestionsForPred string `json:"ref_questions_for_pred"`
	PredAnswers         string `json:"pred_answers"`
	// PredQuestionsForRef are the prediction's questions in the
	// reference's entity IDs, RefAnswers the reference's answers.
	PredQuestionsForRef string `json:"pred_questions_for_ref"`
	RefAnswers          string `json:"ref_answers"`
}

// Score runs the whole procedure on one image.
func (s *Scorer) Score(ctx context.Context, it Item) (ImageResult, error) {
	var tr Transcript
	// Steps 1 and 3 of the authors' script, then 2 and 6: content lines,
	// then question pairs, of each caption.
	if err := both(ctx,
		func(ctx context.Context) (err error) {
			if tr.RefContent, err = s.Judge.Complete(ctx, ExtractPrompt(it.Ref)); err != nil {
				return err
			}
			tr.RefQuestions, err = s.Judge.Complete(ctx, QuestionsPrompt(it.Ref, tr.RefContent))
			return err
		},
		func(ctx context.Context) (err error) {
			if tr.PredContent, err = s.Judge.Complete(ctx, ExtractPrompt(it.Pred)); err != nil {
				return err
			}
			tr.PredQuestions, err = s.Judge.Complete(ctx, QuestionsPrompt(it.Pred, tr.PredContent))
			return err
		}); err != nil {
		return ImageResult{}, fmt.Errorf("%s: %w", it.Image, err)
	}
	// Steps 4 and 7: match entities, remap the other side's questions.
	refQ, predC := Parse(tr.RefQuestions, false), Parse(tr.PredContent, false)
	predQ, refC := Parse(tr.PredQuestions, false), Parse(tr.RefContent, false)
	m, err := s.match(ctx, refQ, predC)
	if err != nil {
		return ImageResult{}, fmt.Errorf("%s: %w", it.Image, err)
	}
	back, err := s.match(ctx, predQ, refC)
	if err != nil {
		return ImageResult{}, fmt.Errorf("%s: %w", it.Image, err)
	}
	tr.RefQuestionsForPred = RemapQuestions(predC, refQ, m.Pairs)
	tr.PredQuestionsForRef = RemapQuestions(refC, predQ, back.Pairs)
	// Steps 5 and 8: each caption answers the other's questions.
	if err := both(ctx,
		func(ctx context.Context) (err error) {
			tr.PredAnswers, err = s.Judge.Complete(ctx, AnswersPrompt(it.Pred, tr.RefQuestionsForPred))
			return err
		},
		func(ctx context.Context) (err error) {
			tr.RefAnswers, err = s.Judge.Complete(ctx, AnswersPrompt(it.Ref, tr.PredQuestionsForRef))
			return err
		}); err != nil {
		return ImageResult{}, fmt.Errorf("%s: %w", it.Image, err)
	}
	// Step 9: the scores.
	r := Evaluate(it.Image, refQ, predC, m, Parse(tr.PredAnswers, true), Parse(tr.RefAnswers, true))
	r.Transcript = tr
	return r, nil
}

// both runs a and b concurrently.
func both(ctx context.Context, a, b func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a(ctx) })
	g.Go(func() error { return b(ctx) })
	return g.Wait()
}

// match embeds the entity names of both sides and matches them.
func (s *Scorer) match(ctx context.Context, ref, cand *Content) (Match, error) {
	names := make([]string, 0, len(ref.Entities)+len(cand.Entities))
	for _, e := range ref.Entities {
		names = append(names, e.Name)
	}
	for _, e := range cand.Entities {
		names = append(names, e.Name)
	}
	var vecs [][]float32
	if len(ref.Entities) > 0 && len(cand.Entities) > 0 {
		var err error
		if vecs, err = s.Embedder.Embed(ctx, names); err != nil {
			return Match{}, err
		}
		if len(vecs) != len(names) {
			return Match{}, fmt.Errorf("score: %d embeddings for %d names", len(vecs), len(names))
		}
	}
	n := len(ref.Entities)
	return MatchEntities(ref, cand, s.WordNet, func(i, j int) float32 {
		return cosine(vecs[i], vecs[n+j])
	})
}

// RemapQuestions is the question list the authors' eval_tag_and_loc writes
// for one caption: the candidate's entity and location lines, then the
// reference's attribute, relation and global question pairs whose entities
// were matched, their entity IDs replaced by the candidate's (a plain text
// replacement, as the authors': "entity 1" → "entity 4" also turns "entity
// 12" into "entity 42"), numbered on from the count of candidate lines.
func RemapQuestions(cand, ref *Content, pairs map[string]string) string {
	var b strings.Builder
	for _, l := range cand.Lines {
		b.WriteString(l)
	}
	n := len(cand.Lines)
	for _, a := range ref.Attributes {
		if to, ok := pairs[a.Entity]; ok {
			fmt.Fprintf(&b, "%d | attribute -->> (%s, \"%s\") \n", n, to, strings.ReplaceAll(a.Text, a.Entity, to))
			n++
		}
	}
	for _, r := range ref.Relations {
		to1, ok1 := pairs[r.Subject]
		to2, ok2 := pairs[r.Object]
		if ok1 && ok2 {
			text := strings.ReplaceAll(strings.ReplaceAll(r.Text, r.Subject, to1), r.Object, to2)
			fmt.Fprintf(&b, "%d | relation -->> (%s, %s, \"%s\") \n", n, to1, to2, text)
			n++
		}
	}
	for _, g := range ref.Globals {
		fmt.Fprintf(&b, "%d | global -->> (\"%s\") \n", n, g)
		n++
	}
	return b.String()
}
