// Package openai is the OpenAI-compatible HTTP API of Pancap Serve: POST
// /v1/chat/completions (JSON or server-sent events), GET /v1/models, GET
// /health and, optionally, GET /metrics, served from the same process,
// batcher, limits, credentials and error mapping as the gRPC API.
//
// It sits beside package server and drives it through its exported
// transport methods (Server.Validate, RunCaption, RunGenerate, Serving,
// Authorized): a request is parsed into the pancap.v1 request the gRPC API
// would receive, checked by the same validator and run on the same backend;
// gRPC codes become HTTP statuses in one table (httpStatus). The model
// "pancapchain" with an image and no text runs the whole chain and answers
// with the caption; a text part runs one free-form prompt (Generate). Stage
// boundaries, entities and pixel boxes travel in "pancap" extension fields
// that a plain OpenAI client ignores. docs/openai.md documents the fields.
package openai
