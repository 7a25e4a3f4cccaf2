"""YAML/JSON pipeline file -> validated, resolved Pipeline: source text, schema checks, the stage
graph, the stage-type registry, the validated-result cache."""
