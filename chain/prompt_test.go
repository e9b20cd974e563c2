package chain

import "testing"

func TestPrompt(t *testing.T) {
	list := "person <box>[[1, 2, 3, 4]]</box>"
	tests := []struct {
		stage   Stage
		handoff string
		want    string
	}{
		{Localize, "ignored", "Please localize all entities in this image."},
		{Tag, "<box>[[1, 2, 3, 4]]</box>", "Please specify the semantic tags of all entities based on their bounding boxes: <box>[[1, 2, 3, 4]]</box>"},
		{Discover, list, "Please specify missing entities and their locations for this image based on these specified entities: " + list},
		{Caption, list, "Please provide a hyper-detailed description for this image, including all entities, their locations, attributes, and relationships, as well as the global image status, based on boxes and tags: " + list},
		{Caption, "", "Please provide a hyper-detailed description for this image, including all entities, their locations, attributes, and relationships, as well as the global image status, based on boxes and tags: "},
	}
	for _, tt := range tests {
		if got := Prompt(tt.stage, tt.handoff); got != tt.want {
			t.Errorf("Prompt(%v, %q) = %q, want %q", tt.stage, tt.handoff, got, tt.want)
		}
	}
}

func TestPromptInvalidStagePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Prompt(5, ...) did not panic")
		}
	}()
	Prompt(5, "")
}

func TestTemplate(t *testing.T) {
	got := Template("Please localize all entities in this image.")
	want := "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: <image>\nPlease localize all entities in this image. ASSISTANT:"
	if got != want {
		t.Errorf("Template = %q\nwant       %q", got, want)
	}
}

func TestStageString(t *testing.T) {
	for s, want := range map[Stage]string{Localize: "localize", Tag: "tag", Discover: "discover", Caption: "caption", 0: "stage(0)"} {
		if got := s.String(); got != want {
			t.Errorf("Stage(%d).String() = %q, want %q", int(s), got, want)
		}
		if got := s.Valid(); got != (s != 0) {
			t.Errorf("Stage(%d).Valid() = %v", int(s), got)
		}
	}
}
