// Package sample picks the next token from a row of logits: greedy, or with
// temperature, top-k and top-p from a seeded random source.
package sample
