// Package chain holds PancapChain's rules: the four stage prompts, the
// vicuna_v1 template, the parsing of each stage's answer into a hand-off list,
// and the mapping of boxes back to pixels of the original image.
package chain
