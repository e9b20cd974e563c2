package tokenizer_test

import (
	"fmt"
	"log"

	"github.com/pancap-serve/pancap/tokenizer"
)

// The second chunk of an image prompt gets its own dummy-prefix "▁" (925)
// before the newline, exactly as LLaVA's tokenizer_image_token gives it.
func ExampleEncodeImagePrompt() {
	tok, err := tokenizer.Load("../model/presets/tokenizers/tiny.model")
	if err != nil {
		log.Fatal(err)
	}
	ids := tokenizer.EncodeImagePrompt(tok, "USER: <image>\nHi ASSISTANT:", 1)
	fmt.Println(ids)
	fmt.Printf("%q\n", tok.Decode(ids))
	// Output:
	// [1 836 972 925 -200 925 13 982 930 529 972]
	// "USER:  \nHi ASSISTANT:"
}

// Deltas carry no leading space and no half character; the trailing space
// is never emitted because the stripped stage text does not hold it.
func ExampleStreamDecoder() {
	tok, err := tokenizer.Load("../model/presets/tokenizers/tiny.model")
	if err != nil {
		log.Fatal(err)
	}
	s := tok.NewStreamDecoder()
	for _, id := range tok.Encode(" tree <box>[[1, 2, 3, 4]]</box>, 日本 ", false) {
		if d := s.Push(id); d != "" {
			fmt.Printf("%q ", d)
		}
	}
	fmt.Printf("%q\n", s.Flush())
	// Output:
	// "tree" " <" "box" ">[[" "1" "," " 2" "," " 3" "," " 4" "]]</" "box" ">," " 日" "本" ""
}
