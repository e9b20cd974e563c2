package sample

// Params are the sampling options of one request. The zero value is greedy
// decoding, as the reference does.
type Params struct {
	Temperature float32 // 0: greedy
	TopP        float32 // 0 or 1: off
	TopK        int     // 0: off
	Seed        uint64  // seed of the request's own random source
}
