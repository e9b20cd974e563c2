package eval

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pancap-serve/pancap/chain"
)

// LocationIoU is the IoU at which a tag-matched pair also counts for location.
const LocationIoU = 0.5

// Counts are the tallies of one dimension: Pred predicted and GT true items,
// HitPred predicted items judged right and HitGT true items found. (They
// differ for relations, whose predictions are judged against every true fact
// while recall is over the relations the true caption states.)
type Counts struct {
	Pred    int `json:"pred"`
	GT      int `json:"gt"`
	HitPred int `json:"hit_pred"`
	HitGT   int `json:"hit_gt"`
}

// add accumulates o into c.
func (c *Counts) add(o Counts) {
	c.Pred += o.Pred
	c.GT += o.GT
	c.HitPred += o.HitPred
	c.HitGT += o.HitGT
}

// Precision is HitPred/Pred; 1 when nothing was predicted and nothing was
// there to find, 0 when nothing was predicted but something was.
func (c Counts) Precision() float64 {
	if c.Pred == 0 {
		return boolf(c.GT == 0)
	}
	return float64(c.HitPred) / float64(c.Pred)
}

// Recall is HitGT/GT; 1 when there was nothing to find.
func (c Counts) Recall() float64 {
	if c.GT == 0 {
		return 1
	}
	return float64(c.HitGT) / float64(c.GT)
}

// F1 is the harmonic mean of precision and recall (0 when both are 0).
func (c Counts) F1() float64 {
	p, r := c.Precision(), c.Recall()
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Tagged is a predicted entity to match: a tag and a model-frame box.
type Tagged struct {
	Tag string
	Box chain.Box
}

// Pair is one matched (prediction, truth) pair, by index, with its IoU.
type Pair struct {
	Pred, GT int
	IoU      float64
}

// IoU is the intersection over union of two model-frame boxes (0 for
// degenerate ones).
func IoU(a, b chain.Box) float64 {
	iw := min(a[2], b[2]) - max(a[0], b[0])
	ih := min(a[3], b[3]) - max(a[1], b[1])
	if iw <= 0 || ih <= 0 {
		return 0
	}
	inter := float64(iw) * float64(ih)
	area := func(x chain.Box) float64 { return float64(max(0, x[2]-x[0])) * float64(max(0, x[3]-x[1])) }
	return inter / (area(a) + area(b) - inter)
}

// Match pairs predictions with true objects one to one: only equal tags may
// pair, and pairs are taken greedily by decreasing IoU (ties: lower
// prediction index, then lower truth index) while both sides are free.
// Every returned pair is a tag match; those with IoU ≥ LocationIoU are
// location matches too.
func Match(pred []Tagged, gt []Object) []Pair {
	var cand []Pair
	for i, p := range pred {
		for j, g := range gt {
			if p.Tag == g.Tag {
				cand = append(cand, Pair{Pred: i, GT: j, IoU: IoU(p.Box, g.Box)})
			}
		}
	}
	slices.SortStableFunc(cand, func(a, b Pair) int { return cmp.Compare(b.IoU, a.IoU) })
	usedP, usedG := make([]bool, len(pred)), make([]bool, len(gt))
	var out []Pair
	for _, c := range cand {
		if !usedP[c.Pred] && !usedG[c.GT] {
			usedP[c.Pred], usedG[c.GT] = true, true
			out = append(out, c)
		}
	}
	return out
}

// Result holds the counts of every dimension over one or more images. Tag,
// Location, Attribute, Relation and Global score the caption (PancapScore);
// ListTag and ListLocation score the chain's final entity list (stage 2
// merged with stage 3) the same way.
type Result struct {
	Images       int
	Tag          Counts
	Location     Counts
	Attribute    Counts
	Relation     Counts
	Global       Counts
	ListTag      Counts
	ListLocation Counts
}

// Add accumulates o into r.
func (r *Result) Add(o Result) {
	r.Images += o.Images
	r.Tag.add(o.Tag)
	r.Location.add(o.Location)
	r.Attribute.add(o.Attribute)
	r.Relation.add(o.Relation)
	r.Global.add(o.Global)
	r.ListTag.add(o.ListTag)
	r.ListLocation.add(o.ListLocation)
}

// Overall is PancapScore's overall score: tag + location + attribute +
// relation + 0.1 × global F1, each ×100.
func (r Result) Overall() float64 {
	return 100 * (r.Tag.F1() + r.Location.F1() + r.Attribute.F1() + r.Relation.F1() + 0.1*r.Global.F1())
}

// entityCounts are the tag and location counts of matched pairs.
func entityCounts(pairs []Pair, npred, ngt int) (tag, loc Counts) {
	tag = Counts{Pred: npred, GT: ngt, HitPred: len(pairs), HitGT: len(pairs)}
	loc = Counts{Pred: npred, GT: ngt}
	for _, p := range pairs {
		if p.IoU >= LocationIoU {
			loc.HitPred++
			loc.HitGT++
		}
	}
	return tag, loc
}

// Score scores one image: its caption and the chain's final entity list
// against the ground truth.
func Score(gt Scene, caption string, list []Tagged) Result {
	c := ParseCaption(caption)
	r := Result{Images: 1}
	ment := make([]Tagged, len(c.Mentions))
	for i, m := range c.Mentions {
		ment[i] = Tagged{Tag: m.Tag, Box: m.Box}
	}
	pairs := Match(ment, gt.Entities)
	r.Tag, r.Location = entityCounts(pairs, len(ment), len(gt.Entities))
	r.ListTag, r.ListLocation = entityCounts(Match(list, gt.Entities), len(list), len(gt.Entities))

	// attributes of location-matched pairs
	toGT := map[int]int{} // mention index → object index
	for _, p := range pairs {
		if p.IoU >= LocationIoU {
			toGT[p.Pred] = p.GT
		}
	}
	for i, m := range c.Mentions {
		r.Attribute.Pred += len(m.Attrs)
		if g, ok := toGT[i]; ok {
			r.Attribute.HitPred += overlap(m.Attrs, gt.Entities[g].Attributes())
		}
	}
	r.Attribute.HitGT = r.Attribute.HitPred
	for _, o := range gt.Entities {
		r.Attribute.GT += len(o.Attributes())
	}

	r.Relation = relationCounts(c, gt, toGT)

	r.Global = Counts{Pred: len(c.Global), GT: len(gt.Global.Items())}
	r.Global.HitPred = overlap(c.Global, gt.Global.Items())
	r.Global.HitGT = r.Global.HitPred
	return r
}

// overlap counts the items of a found in b, each item of b used once.
func overlap(a, b []string) int {
	left := map[string]int{}
	for _, x := range b {
		left[x]++
	}
	n := 0
	for _, x := range a {
		if left[x] > 0 {
			left[x]--
			n++
		}
	}
	return n
}

// relationCounts judges the caption's relations: a predicted relation is
// right when both its entities resolve (name → first mention of that colour
// and tag → its location-matched object) and the relation is one of the
// scene's facts; a stated true relation is found when some prediction
// resolves to it.
func relationCounts(c Caption, gt Scene, toGT map[int]int) Counts {
	resolve := func(name string) (int, bool) {
		colour, tag, ok := strings.Cut(name, " ")
		if !ok {
			return 0, false
		}
		for i, m := range c.Mentions {
			if m.Tag == tag && m.has("colour:"+colour) {
				g, ok := toGT[i]
				return g, ok
			}
		}
		return 0, false
	}
	facts := map[Relation]bool{}
	for _, f := range gt.Facts {
		facts[f] = true
	}
	found := map[Relation]bool{}
	n := Counts{Pred: len(c.Relations), GT: len(gt.Relations)}
	for _, nr := range c.Relations {
		s, ok1 := resolve(nr.Subj)
		o, ok2 := resolve(nr.Obj)
		if !ok1 || !ok2 {
			continue
		}
		rel := Relation{Subj: s, Rel: nr.Rel, Obj: o}
		if facts[rel] {
			n.HitPred++
		}
		found[rel] = true
	}
	for _, rel := range gt.Relations {
		if found[rel] {
			n.HitGT++
		}
	}
	return n
}

// Dimension is one row of a Report.
type Dimension struct {
	Name      string  `json:"name"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Counts    Counts  `json:"counts"`
}

// Report is the printable and JSON form of a Result.
type Report struct {
	Images     int         `json:"images"`
	Dimensions []Dimension `json:"dimensions"`
	Overall    float64     `json:"overall"` // PancapScore overall, 0–410
}

// Report returns r's rows: the five caption dimensions, then the list's tag
// and location.
func (r Result) Report() Report {
	rows := []struct {
		name string
		c    Counts
	}{
		{"tag", r.Tag}, {"location", r.Location}, {"attribute", r.Attribute}, {"relation", r.Relation},
		{"global", r.Global}, {"list tag", r.ListTag}, {"list location", r.ListLocation},
	}
	rep := Report{Images: r.Images, Overall: r.Overall()}
	for _, x := range rows {
		rep.Dimensions = append(rep.Dimensions, Dimension{Name: x.name, Precision: x.c.Precision(),
			Recall: x.c.Recall(), F1: x.c.F1(), Counts: x.c})
	}
	return rep
}

// WriteTable prints the report as an aligned table.
func (rep Report) WriteTable(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "%-14s %9s %9s %9s %7s %7s\n", "dimension", "precision", "recall", "F1", "pred", "true"); err != nil {
		return err
	}
	for _, d := range rep.Dimensions {
		if _, err := fmt.Fprintf(w, "%-14s %9.3f %9.3f %9.3f %7d %7d\n", d.Name, d.Precision, d.Recall, d.F1,
			d.Counts.Pred, d.Counts.GT); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "overall (PancapScore: tag+location+attribute+relation+0.1×global, ×100) %.1f over %d images\n",
		rep.Overall, rep.Images)
	return err
}
