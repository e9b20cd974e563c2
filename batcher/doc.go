// Package batcher is the continuous batcher: it admits PancapChain and
// free-form generation requests, runs the four stages of many images together
// in one step loop over an engine.Engine, shares each image's prefix KV blocks
// across its stages, and streams every request's events.
package batcher
