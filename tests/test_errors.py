"""The one line the CLI prints for an error: location, stage, key, message, hint; each said once."""
from pipeline_tasks.errors import SpecError, StageInputError


def test_a_message_that_names_its_file_does_not_repeat_it():
    err = StageInputError("/data/x.wav holds no audio samples", path="/data/x.wav", stage="t")
    assert str(err) == "stage 't': /data/x.wav holds no audio samples"


def test_the_location_leads_when_the_message_does_not_name_the_file():
    err = StageInputError("holds no audio samples", path="/data/x.wav", stage="t", hint="check the file")
    assert str(err) == "/data/x.wav: stage 't': holds no audio samples (check the file)"


def test_a_line_number_keeps_the_location_even_if_the_message_names_the_file():
    err = SpecError("p.yaml is not valid here", path="p.yaml", line=3, column=5, stage="a", key="fps")
    assert str(err) == "p.yaml:3:5: stage 'a', key 'fps': p.yaml is not valid here"
