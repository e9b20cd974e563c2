package model

import (
	"errors"

	"github.com/pancap-serve/pancap/model/weights"
)

func mergeLoRA(main *weights.Store, layout Layout, dir string) error {
	return errors.New("pending weights.MergeLoRA")
}
