"""What MLflow 3.17.2's handlers check of a request before they act, route by route (mlflow/server/handlers.py).

For each forwarded route whose handler validates its request: the full name of the protobuf request
message (empty for the handlers that validate plain JSON without one), whether the handler reads the JSON
body once before it parses it (log-batch's size check), and the schema it hands `_get_request_message`:
each field with its checks, in MLflow's order. A check is the name of MLflow's `_assert_<name>` function,
or one of the handlers' inline checks (`secret_value`: present unless null, refused without the docs hint):

- ("at_most", N): `_assert_less_than_or_equal(int(x), N)`;
- ("count_at_most", N, message): at most N items, refused with `message` ({count}: how many were sent);
- ("int_between", low, high, message): `_assert_intlike_within_range(int(x), low, high, message)` (a fifth
  item names MLflow's function where it is a named one rather than a lambda);
- ("fields_present", name, keys): every entry of the list has each of `keys` (log-batch).

Routes missing here validate nothing of their request (their handlers read path parameters only).
tests/unit/test_mlflow_requests.py reads the schemas off the installed `mlflow` package and fails when an
upgrade changes one, and compares `mlflow_requests.store_refusal` with MLflow's own parsing.
"""

from __future__ import annotations

from typing import Any

Check = str | tuple[Any, ...]
RouteChecks = tuple[str, bool, tuple[tuple[str, tuple[Check, ...]], ...]]

# handlers._review_queue_max_results_validator: a named function, not one of the handlers' lambdas.
_REVIEW_QUEUE_MAX_RESULTS = (
    "int_between",
    1,
    50000,
    "max_results must be between 1 and 50000.",
    "_review_queue_max_results_validator",
)

# fmt: off
REQUEST_CHECKS: dict[tuple[str, str, int], RouteChecks] = {
    ("GET", "/mlflow/experiments/get-by-name", 2): ("mlflow.GetExperimentByName", False, (
        ("experiment_name", ("required", "string")),
    )),
    ("POST", "/mlflow/experiments/create", 2): ("mlflow.CreateExperiment", False, (
        ("name", ("required", "string")),
        ("artifact_location", ("string",)),
        ("tags", ("array",)),
    )),
    ("POST", "/mlflow/experiments/search", 2): ("mlflow.SearchExperiments", False, (
        ("view_type", ("intlike",)),
        ("max_results", ("intlike",)),
        ("order_by", ("array",)),
        ("filter", ("string",)),
        ("page_token", ("string",)),
    )),
    ("GET", "/mlflow/experiments/search", 2): ("mlflow.SearchExperiments", False, (
        ("view_type", ("intlike",)),
        ("max_results", ("intlike",)),
        ("order_by", ("array",)),
        ("filter", ("string",)),
        ("page_token", ("string",)),
    )),
    ("GET", "/mlflow/experiments/get", 2): ("mlflow.GetExperiment", False, (
        ("experiment_id", ("required", "string")),
    )),
    ("POST", "/mlflow/experiments/delete", 2): ("mlflow.DeleteExperiment", False, (
        ("experiment_id", ("required", "string")),
    )),
    ("POST", "/mlflow/experiments/restore", 2): ("mlflow.RestoreExperiment", False, (
        ("experiment_id", ("required", "string")),
    )),
    ("POST", "/mlflow/experiments/update", 2): ("mlflow.UpdateExperiment", False, (
        ("experiment_id", ("required", "string")),
        ("new_name", ("string", "required")),
    )),
    ("POST", "/mlflow/experiments/set-experiment-tag", 2): ("mlflow.SetExperimentTag", False, (
        ("experiment_id", ("required", "string")),
        ("key", ("required", "string")),
        ("value", ("string",)),
    )),
    ("POST", "/mlflow/experiments/delete-experiment-tag", 2): ("mlflow.DeleteExperimentTag", False, (
        ("experiment_id", ("required", "string")),
        ("key", ("required", "string")),
    )),
    ("POST", "/mlflow/experiments/search-datasets", 2): ("mlflow.SearchDatasets", False, ()),
    ("POST", "/mlflow/runs/create", 2): ("mlflow.CreateRun", False, (
        ("experiment_id", ("string",)),
        ("start_time", ("intlike",)),
        ("run_name", ("string",)),
    )),
    ("POST", "/mlflow/runs/update", 2): ("mlflow.UpdateRun", False, (
        ("run_id", ("required", "string")),
        ("end_time", ("intlike",)),
        ("status", ("string",)),
        ("run_name", ("string",)),
    )),
    ("POST", "/mlflow/runs/delete", 2): ("mlflow.DeleteRun", False, (
        ("run_id", ("required", "string")),
    )),
    ("POST", "/mlflow/runs/restore", 2): ("mlflow.RestoreRun", False, (
        ("run_id", ("required", "string")),
    )),
    ("POST", "/mlflow/runs/log-metric", 2): ("mlflow.LogMetric", False, (
        ("run_id", ("required", "string")),
        ("key", ("required", "string")),
        ("value", ("required", "floatlike")),
        ("timestamp", ("intlike", "required")),
        ("step", ("intlike",)),
        ("model_id", ("string",)),
        ("dataset_name", ("string",)),
        ("dataset_digest", ("string",)),
    )),
    ("POST", "/mlflow/runs/log-parameter", 2): ("mlflow.LogParam", False, (
        ("run_id", ("required", "string")),
        ("key", ("required", "string")),
        ("value", ("string",)),
    )),
    ("POST", "/mlflow/runs/set-tag", 2): ("mlflow.SetTag", False, (
        ("run_id", ("required", "string")),
        ("key", ("required", "string")),
        ("value", ("string",)),
    )),
    ("POST", "/mlflow/runs/delete-tag", 2): ("mlflow.DeleteTag", False, (
        ("run_id", ("required", "string")),
        ("key", ("required", "string")),
    )),
    ("POST", "/mlflow/runs/log-batch", 2): ("mlflow.LogBatch", True, (
        ("run_id", ("string", "required")),
        ("metrics", ("array", ("fields_present", "metrics", ("key", "value", "timestamp")))),
        ("params", ("array", ("fields_present", "params", ("key",)))),
        ("tags", ("array", ("fields_present", "tags", ("key",)))),
    )),
    ("POST", "/mlflow/runs/log-model", 2): ("mlflow.LogModel", False, (
        ("run_id", ("string", "required")),
        ("model_json", ("string", "required")),
    )),
    ("POST", "/mlflow/runs/log-inputs", 2): ("mlflow.LogInputs", False, (
        ("run_id", ("required", "string")),
        ("datasets", ("array",)),
        ("models", ("array",)),
    )),
    ("POST", "/mlflow/runs/outputs", 2): ("mlflow.LogOutputs", False, (
        ("run_id", ("required", "string")),
        ("models", ("required", "array")),
    )),
    ("GET", "/mlflow/runs/get", 2): ("mlflow.GetRun", False, (
        ("run_id", ("required", "string")),
    )),
    ("POST", "/mlflow/runs/search", 2): ("mlflow.SearchRuns", False, (
        ("experiment_ids", ("array",)),
        ("filter", ("string",)),
        ("max_results", ("intlike", ("at_most", 50000))),
        ("order_by", ("array", "item_type_string")),
    )),
    ("GET", "/mlflow/artifacts/list", 2): ("mlflow.ListArtifacts", False, (
        ("run_id", ("string", "required")),
        ("path", ("string",)),
        ("page_token", ("string",)),
    )),
    ("POST", "/mlflow/artifacts/presigned-upload-url", 2): ("mlflow.CreatePresignedUploadUrl", False, (
        ("run_id", ("string",)),
        ("model_id", ("string",)),
        ("path", ("required", "string")),
        ("expiration", ("intlike",)),
    )),
    ("POST", "/mlflow/artifacts/presigned-download-url", 2): ("mlflow.CreatePresignedDownloadUrl", False, (
        ("run_id", ("required", "string")),
        ("path", ("required", "string")),
        ("expiration", ("intlike",)),
    )),
    ("GET", "/mlflow/metrics/get-history", 2): ("mlflow.GetMetricHistory", False, (
        ("run_id", ("string", "required")),
        ("metric_key", ("string", "required")),
        ("page_token", ("string",)),
    )),
    ("GET", "/mlflow/metrics/get-history-bulk-interval", 2): ("mlflow.GetMetricHistoryBulkInterval", False, (
        ("run_ids", (
            "required",
            "array",
            "item_type_string",
            ("count_at_most", 100, (
                "GetMetricHistoryBulkInterval request must specify at most 100 run_ids. Received {count} run_ids."
            )),
        )),
        ("metric_key", ("required", "string")),
        ("start_step", ("intlike",)),
        ("end_step", ("intlike",)),
        ("max_results", ("intlike", ("int_between", 1, 2500, "max_results must be between 1 and 2500."))),
    )),
    ("POST", "/mlflow/logged-models", 2): ("mlflow.CreateLoggedModel", False, (
        ("experiment_id", ("string", "required")),
        ("name", ("string",)),
        ("model_type", ("string",)),
        ("source_run_id", ("string",)),
        ("params", ("array",)),
        ("tags", ("array",)),
    )),
    ("POST", "/mlflow/logged-models/search", 2): ("mlflow.SearchLoggedModels", False, (
        ("experiment_ids", ("array", "item_type_string", "required")),
        ("filter", ("string",)),
        ("datasets", ("array",)),
        ("max_results", ("intlike",)),
        ("order_by", ("array",)),
        ("page_token", ("string",)),
    )),
    ("PATCH", "/mlflow/logged-models/{model_id:str}", 2): ("mlflow.FinalizeLoggedModel", False, (
        ("model_id", ("string", "required")),
        ("status", ("intlike", "required")),
    )),
    ("PATCH", "/mlflow/logged-models/{model_id:str}/tags", 2): ("mlflow.SetLoggedModelTags", False, (
        ("tags", ("array",)),
    )),
    ("POST", "/mlflow/logged-models/{model_id:str}/params", 2): ("mlflow.LogLoggedModelParamsRequest", False, (
        ("model_id", ("string", "required")),
        ("params", ("array",)),
    )),
    ("GET", "/mlflow/logged-models/{model_id:str}/artifacts/directories", 2): (
        "mlflow.ListLoggedModelArtifacts", False, (
            ("artifact_directory_path", ("string",)),
        ),
    ),
    ("POST", "/mlflow/registered-models/create", 2): ("mlflow.CreateRegisteredModel", False, (
        ("name", ("string", "required")),
        ("tags", ("array",)),
        ("description", ("string",)),
    )),
    ("POST", "/mlflow/registered-models/rename", 2): ("mlflow.RenameRegisteredModel", False, (
        ("name", ("string", "required")),
        ("new_name", ("string", "required")),
    )),
    ("PATCH", "/mlflow/registered-models/update", 2): ("mlflow.UpdateRegisteredModel", False, (
        ("name", ("string", "required")),
        ("description", ("string",)),
    )),
    ("DELETE", "/mlflow/registered-models/delete", 2): ("mlflow.DeleteRegisteredModel", False, (
        ("name", ("string", "required")),
    )),
    ("GET", "/mlflow/registered-models/get", 2): ("mlflow.GetRegisteredModel", False, (
        ("name", ("string", "required")),
    )),
    ("GET", "/mlflow/registered-models/search", 2): ("mlflow.SearchRegisteredModels", False, (
        ("filter", ("string",)),
        ("max_results", ("intlike", ("at_most", 1000))),
        ("order_by", ("array", "item_type_string")),
        ("page_token", ("string",)),
    )),
    ("POST", "/mlflow/registered-models/get-latest-versions", 2): ("mlflow.GetLatestVersions", False, (
        ("name", ("string", "required")),
        ("stages", ("array", "item_type_string")),
    )),
    ("GET", "/mlflow/registered-models/get-latest-versions", 2): ("mlflow.GetLatestVersions", False, (
        ("name", ("string", "required")),
        ("stages", ("array", "item_type_string")),
    )),
    ("POST", "/mlflow/registered-models/set-tag", 2): ("mlflow.SetRegisteredModelTag", False, (
        ("name", ("string", "required")),
        ("key", ("string", "required")),
        ("value", ("string",)),
    )),
    ("DELETE", "/mlflow/registered-models/delete-tag", 2): ("mlflow.DeleteRegisteredModelTag", False, (
        ("name", ("string", "required")),
        ("key", ("string", "required")),
    )),
    ("POST", "/mlflow/registered-models/alias", 2): ("mlflow.SetRegisteredModelAlias", False, (
        ("name", ("string", "required")),
        ("alias", ("string", "required")),
        ("version", ("string", "required")),
    )),
    ("DELETE", "/mlflow/registered-models/alias", 2): ("mlflow.DeleteRegisteredModelAlias", False, (
        ("name", ("string", "required")),
        ("alias", ("string", "required")),
    )),
    ("GET", "/mlflow/registered-models/alias", 2): ("mlflow.GetModelVersionByAlias", False, (
        ("name", ("string", "required")),
        ("alias", ("string", "required")),
    )),
    ("POST", "/mlflow/model-versions/create", 2): ("mlflow.CreateModelVersion", False, (
        ("name", ("string", "required")),
        ("source", ("string", "required")),
        ("run_id", ("string",)),
        ("tags", ("array",)),
        ("run_link", ("string",)),
        ("description", ("string",)),
        ("model_id", ("string",)),
    )),
    ("PATCH", "/mlflow/model-versions/update", 2): ("mlflow.UpdateModelVersion", False, (
        ("name", ("string", "required")),
        ("version", ("string", "required")),
        ("description", ("string",)),
    )),
    ("POST", "/mlflow/model-versions/transition-stage", 2): ("mlflow.TransitionModelVersionStage", False, (
        ("name", ("string", "required")),
        ("version", ("string", "required")),
        ("stage", ("string", "required")),
        ("archive_existing_versions", ("bool",)),
    )),
    ("DELETE", "/mlflow/model-versions/delete", 2): ("mlflow.DeleteModelVersion", False, (
        ("name", ("string", "required")),
        ("version", ("string", "required")),
    )),
    ("GET", "/mlflow/model-versions/get", 2): ("mlflow.GetModelVersion", False, (
        ("name", ("string", "required")),
        ("version", ("string", "required")),
    )),
    ("GET", "/mlflow/model-versions/search", 2): ("mlflow.SearchModelVersions", False, (
        ("filter", ("string",)),
        ("max_results", ("intlike", ("at_most", 200000))),
        ("order_by", ("array", "item_type_string")),
        ("page_token", ("string",)),
    )),
    ("GET", "/mlflow/model-versions/get-download-uri", 2): ("mlflow.GetModelVersionDownloadUri", False, ()),
    ("POST", "/mlflow/model-versions/set-tag", 2): ("mlflow.SetModelVersionTag", False, (
        ("name", ("string", "required")),
        ("version", ("string", "required")),
        ("key", ("string", "required")),
        ("value", ("string",)),
    )),
    ("DELETE", "/mlflow/model-versions/delete-tag", 2): ("mlflow.DeleteModelVersionTag", False, (
        ("name", ("string", "required")),
        ("version", ("string", "required")),
        ("key", ("string", "required")),
    )),
    ("GET", "/mlflow-artifacts/artifacts", 2): ("mlflow.artifacts.ListArtifacts", False, ()),
    ("DELETE", "/mlflow-artifacts/artifacts/{artifact_path:path}", 2): ("mlflow.artifacts.DeleteArtifact", False, ()),
    ("POST", "/mlflow-artifacts/mpu/create/{artifact_path:path}", 2): (
        "mlflow.artifacts.CreateMultipartUpload", False, (
            ("path", ("required", "string")),
            ("num_parts", ("intlike",)),
        ),
    ),
    ("POST", "/mlflow-artifacts/mpu/complete/{artifact_path:path}", 2): (
        "mlflow.artifacts.CompleteMultipartUpload", False, (
            ("path", ("required", "string")),
            ("upload_id", ("string",)),
            ("parts", ("required",)),
        ),
    ),
    ("POST", "/mlflow-artifacts/mpu/abort/{artifact_path:path}", 2): ("mlflow.artifacts.AbortMultipartUpload", False, (
        ("path", ("required", "string")),
        ("upload_id", ("string",)),
    )),
    ("POST", "/mlflow/traces", 2): ("mlflow.StartTrace", False, (
        ("experiment_id", ("string",)),
        ("timestamp_ms", ("intlike",)),
        ("request_metadata", ("map_key_present",)),
        ("tags", ("map_key_present",)),
    )),
    ("GET", "/mlflow/traces", 2): ("mlflow.SearchTraces", False, (
        ("experiment_ids", ("array", "item_type_string", "required")),
        ("filter", ("string",)),
        ("max_results", ("intlike", ("at_most", 500))),
        ("order_by", ("array", "item_type_string")),
        ("page_token", ("string",)),
    )),
    ("PATCH", "/mlflow/traces/{request_id:str}", 2): ("mlflow.EndTrace", False, (
        ("timestamp_ms", ("intlike",)),
        ("status", ("string",)),
        ("request_metadata", ("map_key_present",)),
        ("tags", ("map_key_present",)),
    )),
    ("PATCH", "/mlflow/traces/{request_id:str}/tags", 2): ("mlflow.SetTraceTag", False, (
        ("key", ("string", "required")),
        ("value", ("string",)),
    )),
    ("DELETE", "/mlflow/traces/{request_id:str}/tags", 2): ("mlflow.DeleteTraceTag", False, (
        ("key", ("string", "required")),
    )),
    ("POST", "/mlflow/traces/delete-traces", 2): ("mlflow.DeleteTraces", False, (
        ("experiment_id", ("string", "required")),
        ("max_timestamp_millis", ("intlike",)),
        ("max_traces", ("intlike",)),
        ("request_ids", ("array", "item_type_string")),
    )),
    ("POST", "/mlflow/traces/link-to-run", 2): ("mlflow.LinkTracesToRun", False, (
        ("trace_ids", ("array", "required", "item_type_string")),
        ("run_id", ("string", "required")),
    )),
    ("POST", "/mlflow/traces/link-prompts", 2): ("mlflow.LinkPromptsToTrace", False, (
        ("trace_id", ("string", "required")),
        ("prompt_versions", ("array", "required")),
    )),
    ("POST", "/mlflow/traces", 3): ("mlflow.StartTraceV3", False, (
        ("trace", ("required",)),
    )),
    ("POST", "/mlflow/traces/search", 3): ("mlflow.SearchTracesV3", False, (
        ("locations", ("array", "required")),
        ("filter", ("string",)),
        ("max_results", ("intlike", ("at_most", 500))),
        ("order_by", ("array", "item_type_string")),
        ("page_token", ("string",)),
    )),
    ("GET", "/mlflow/traces/get", 3): ("mlflow.GetTrace", False, (
        ("trace_id", ("string", "required")),
        ("allow_partial", ("bool",)),
    )),
    ("GET", "/mlflow/traces/batchGet", 3): ("mlflow.BatchGetTraces", False, (
        ("trace_ids", ("array", "required", "item_type_string")),
        ("experiment_ids", ("array", "item_type_string")),
    )),
    ("POST", "/mlflow/traces/batchGetInfos", 3): ("mlflow.BatchGetTraceInfos", False, (
        ("trace_ids", ("array", "required", "item_type_string")),
        ("experiment_ids", ("array", "item_type_string")),
    )),
    ("POST", "/mlflow/traces/delete-traces", 3): ("mlflow.DeleteTraces", False, (
        ("experiment_id", ("string", "required")),
        ("max_timestamp_millis", ("intlike",)),
        ("max_traces", ("intlike",)),
        ("request_ids", ("array", "item_type_string")),
    )),
    ("POST", "/mlflow/traces/calculate-filter-correlation", 3): ("mlflow.CalculateTraceFilterCorrelation", False, (
        ("experiment_ids", ("array", "required", "item_type_string")),
        ("filter_string1", ("string", "required")),
        ("filter_string2", ("string", "required")),
        ("base_filter", ("string",)),
    )),
    ("POST", "/mlflow/traces/metrics", 3): ("mlflow.QueryTraceMetrics", False, (
        ("experiment_ids", ("array", "required", "item_type_string")),
        ("view_type", ("required",)),
        ("metric_name", ("string", "required")),
        ("aggregations", ("array", "required")),
        ("dimensions", ("array", "item_type_string")),
        ("filters", ("array", "item_type_string")),
        ("time_interval_seconds", ("intlike",)),
        ("start_time_ms", ("intlike",)),
        ("end_time_ms", ("intlike",)),
        ("max_results", ("intlike",)),
        ("page_token", ("string",)),
    )),
    ("PATCH", "/mlflow/traces/{trace_id:str}/tags", 3): ("mlflow.SetTraceTagV3", False, (
        ("key", ("string", "required")),
        ("value", ("string",)),
    )),
    ("DELETE", "/mlflow/traces/{trace_id:str}/tags", 3): ("mlflow.DeleteTraceTagV3", False, (
        ("key", ("string", "required")),
    )),
    ("POST", "/mlflow/traces/{trace_id:str}/assessments", 3): ("mlflow.CreateAssessment", False, (
        ("assessment", ("required",)),
    )),
    ("PATCH", "/mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", 3): ("mlflow.UpdateAssessment", False, (
        ("assessment", ("required",)),
        ("update_mask", ("required",)),
    )),
    ("POST", "/mlflow/datasets/create", 3): ("mlflow.CreateDataset", False, (
        ("name", ("required", "string")),
        ("experiment_ids", ("array",)),
        ("tags", ("string",)),
    )),
    ("POST", "/mlflow/datasets/search", 3): ("mlflow.SearchEvaluationDatasets", False, (
        ("experiment_ids", ("array",)),
        ("filter_string", ("string",)),
        ("max_results", ("intlike",)),
        ("order_by", ("array",)),
        ("page_token", ("string",)),
    )),
    ("GET", "/mlflow/datasets/search", 3): ("mlflow.SearchEvaluationDatasets", False, (
        ("experiment_ids", ("array",)),
        ("filter_string", ("string",)),
        ("max_results", ("intlike",)),
        ("order_by", ("array",)),
        ("page_token", ("string",)),
    )),
    ("PATCH", "/mlflow/datasets/{dataset_id:str}/tags", 3): ("mlflow.SetDatasetTags", False, (
        ("tags", ("required", "string")),
    )),
    ("POST", "/mlflow/datasets/{dataset_id:str}/records", 3): ("mlflow.UpsertDatasetRecords", False, (
        ("records", ("required", "string")),
    )),
    ("GET", "/mlflow/datasets/{dataset_id:str}/records", 3): ("mlflow.GetDatasetRecords", False, (
        ("max_results", ("intlike",)),
        ("page_token", ("string",)),
    )),
    ("DELETE", "/mlflow/datasets/{dataset_id:str}/records", 3): ("mlflow.DeleteDatasetRecords", False, (
        ("dataset_record_ids", ("array",)),
    )),
    ("POST", "/mlflow/datasets/{dataset_id:str}/add-experiments", 3): ("mlflow.AddDatasetToExperiments", False, (
        ("experiment_ids", ("array",)),
    )),
    ("POST", "/mlflow/datasets/{dataset_id:str}/remove-experiments", 3): (
        "mlflow.RemoveDatasetFromExperiments", False, (
            ("experiment_ids", ("array",)),
        ),
    ),
    ("POST", "/mlflow/scorers/register", 3): ("mlflow.RegisterScorer", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
        ("serialized_scorer", ("required", "string")),
    )),
    ("GET", "/mlflow/scorers/list", 3): ("mlflow.ListScorers", False, (
        ("experiment_id", ("string",)),
        ("experiment_ids", ("array", "item_type_string")),
    )),
    ("GET", "/mlflow/scorers/versions", 3): ("mlflow.ListScorerVersions", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
    )),
    ("GET", "/mlflow/scorers/get", 3): ("mlflow.GetScorer", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
        ("version", ("intlike",)),
    )),
    ("DELETE", "/mlflow/scorers/delete", 3): ("mlflow.DeleteScorer", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
        ("version", ("intlike",)),
    )),
    ("GET", "/mlflow/scorers/online-configs", 3): ("", False, (
        ("scorer_ids", ("required", "array", "item_type_string")),
    )),
    ("PUT", "/mlflow/scorers/online-config", 3): ("", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
        ("sample_rate", ("required",)),
        ("filter_string", ()),
    )),
    ("POST", "/mlflow/issues", 3): ("mlflow.issues.CreateIssue", False, (
        ("name", ("required", "string")),
        ("description", ("required", "string")),
        ("experiment_id", ("required", "string")),
    )),
    ("POST", "/mlflow/issues/search", 3): ("mlflow.issues.SearchIssues", False, ()),
    ("PATCH", "/mlflow/issues/{issue_id:str}", 3): ("mlflow.issues.UpdateIssue", False, (
        ("issue_id", ("required",)),
    )),
    ("POST", "/mlflow/label-schemas/create", 3): ("mlflow.label_schemas.CreateLabelSchema", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
    )),
    ("GET", "/mlflow/label-schemas/get", 3): ("mlflow.label_schemas.GetLabelSchema", False, (
        ("schema_id", ("required", "string")),
    )),
    ("GET", "/mlflow/label-schemas/get-by-name", 3): ("mlflow.label_schemas.GetLabelSchemaByName", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
    )),
    ("GET", "/mlflow/label-schemas/list", 3): ("mlflow.label_schemas.ListLabelSchemas", False, (
        ("experiment_id", ("required", "string")),
        ("max_results", ("intlike", ("int_between", 1, 50000, "max_results must be between 1 and 50000."))),
    )),
    ("PATCH", "/mlflow/label-schemas/update", 3): ("mlflow.label_schemas.UpdateLabelSchema", False, (
        ("schema_id", ("required", "string")),
    )),
    ("DELETE", "/mlflow/label-schemas/delete", 3): ("mlflow.label_schemas.DeleteLabelSchema", False, (
        ("schema_id", ("required", "string")),
    )),
    ("POST", "/mlflow/review-queues/create", 3): ("mlflow.review_queues.CreateReviewQueue", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
    )),
    ("GET", "/mlflow/review-queues/get", 3): ("mlflow.review_queues.GetReviewQueue", False, (
        ("queue_id", ("required", "string")),
    )),
    ("GET", "/mlflow/review-queues/get-by-name", 3): ("mlflow.review_queues.GetReviewQueueByName", False, (
        ("experiment_id", ("required", "string")),
        ("name", ("required", "string")),
    )),
    ("GET", "/mlflow/review-queues/list", 3): ("mlflow.review_queues.ListReviewQueues", False, (
        ("experiment_id", ("required", "string")),
        ("max_results", ("intlike", _REVIEW_QUEUE_MAX_RESULTS)),
    )),
    ("POST", "/mlflow/review-queues/update", 3): ("mlflow.review_queues.UpdateReviewQueue", False, (
        ("queue_id", ("required", "string")),
    )),
    ("POST", "/mlflow/review-queues/delete", 3): ("mlflow.review_queues.DeleteReviewQueue", False, (
        ("queue_id", ("required", "string")),
    )),
    ("POST", "/mlflow/review-queues/get-or-create-user", 3): ("mlflow.review_queues.GetOrCreateUserQueue", False, (
        ("experiment_id", ("required", "string")),
        ("user", ("required", "string")),
    )),
    ("POST", "/mlflow/review-queues/items/add", 3): ("mlflow.review_queues.AddItemsToReviewQueue", False, (
        ("queue_id", ("required", "string")),
    )),
    ("GET", "/mlflow/review-queues/items/list", 3): ("mlflow.review_queues.ListReviewQueueItems", False, (
        ("queue_id", ("required", "string")),
        ("max_results", ("intlike", _REVIEW_QUEUE_MAX_RESULTS)),
    )),
    ("POST", "/mlflow/review-queues/items/remove", 3): ("mlflow.review_queues.RemoveItemsFromReviewQueue", False, (
        ("queue_id", ("required", "string")),
    )),
    ("POST", "/mlflow/review-queues/items/set-status", 3): ("mlflow.review_queues.SetReviewQueueItemStatus", False, (
        ("queue_id", ("required", "string")),
        ("item_id", ("required", "string")),
    )),
    ("POST", "/mlflow/webhooks", 2): ("mlflow.CreateWebhook", False, (
        ("name", ("string", "required")),
        ("url", ("string", "required")),
        ("events", ("array", "required")),
        ("description", ("string",)),
        ("secret", ("string",)),
        ("status", ("string",)),
    )),
    ("GET", "/mlflow/webhooks", 2): ("mlflow.ListWebhooks", False, (
        ("max_results", ("intlike",)),
        ("page_token", ("string",)),
    )),
    ("PATCH", "/mlflow/webhooks/{webhook_id:str}", 2): ("mlflow.UpdateWebhook", False, (
        ("name", ("string",)),
        ("description", ("string",)),
        ("url", ("string",)),
        ("events", ("array",)),
        ("secret", ("string",)),
        ("status", ("string",)),
    )),
    ("POST", "/mlflow/webhooks/{webhook_id:str}/test", 2): ("mlflow.TestWebhook", False, ()),
    ("POST", "/mlflow/gateway/secrets/create", 3): ("mlflow.CreateGatewaySecret", False, (
        ("secret_name", ("required", "string")),
        ("secret_value", ("secret_value",)),
        ("provider", ("string",)),
        ("created_by", ("string",)),
    )),
    ("GET", "/mlflow/gateway/secrets/get", 3): ("mlflow.GetGatewaySecretInfo", False, (
        ("secret_id", ("required", "string")),
    )),
    ("GET", "/mlflow/gateway/secrets/list", 3): ("mlflow.ListGatewaySecretInfos", False, (
        ("provider", ("string",)),
    )),
    ("POST", "/mlflow/gateway/secrets/update", 3): ("mlflow.UpdateGatewaySecret", False, (
        ("secret_id", ("required", "string")),
        ("updated_by", ("string",)),
    )),
    ("DELETE", "/mlflow/gateway/secrets/delete", 3): ("mlflow.DeleteGatewaySecret", False, (
        ("secret_id", ("required", "string")),
    )),
    ("POST", "/mlflow/gateway/endpoints/create", 3): ("mlflow.CreateGatewayEndpoint", False, (
        ("name", ("required", "string")),
        ("created_by", ("string",)),
        ("model_configs", ("required",)),
        ("routing_strategy", ("string",)),
    )),
    ("GET", "/mlflow/gateway/endpoints/get", 3): ("mlflow.GetGatewayEndpoint", False, (
        ("endpoint_id", ("string",)),
        ("name", ("string",)),
    )),
    ("GET", "/mlflow/gateway/endpoints/list", 3): ("mlflow.ListGatewayEndpoints", False, (
        ("provider", ("string",)),
    )),
    ("POST", "/mlflow/gateway/endpoints/update", 3): ("mlflow.UpdateGatewayEndpoint", False, (
        ("endpoint_id", ("required", "string")),
        ("name", ("string",)),
        ("updated_by", ("string",)),
        ("routing_strategy", ("string",)),
    )),
    ("DELETE", "/mlflow/gateway/endpoints/delete", 3): ("mlflow.DeleteGatewayEndpoint", False, (
        ("endpoint_id", ("required", "string")),
    )),
    ("POST", "/mlflow/gateway/endpoints/set-tag", 3): ("mlflow.SetGatewayEndpointTag", False, (
        ("endpoint_id", ("required", "string")),
        ("key", ("required", "string")),
        ("value", ("string",)),
    )),
    ("DELETE", "/mlflow/gateway/endpoints/delete-tag", 3): ("mlflow.DeleteGatewayEndpointTag", False, (
        ("endpoint_id", ("required", "string")),
        ("key", ("required", "string")),
    )),
    ("POST", "/mlflow/gateway/endpoints/models/attach", 3): ("mlflow.AttachModelToGatewayEndpoint", False, (
        ("endpoint_id", ("required", "string")),
        ("model_config", ("required",)),
        ("created_by", ("string",)),
    )),
    ("POST", "/mlflow/gateway/endpoints/models/detach", 3): ("mlflow.DetachModelFromGatewayEndpoint", False, (
        ("endpoint_id", ("required", "string")),
        ("model_definition_id", ("required", "string")),
    )),
    ("POST", "/mlflow/gateway/endpoints/bindings/create", 3): ("mlflow.CreateGatewayEndpointBinding", False, (
        ("endpoint_id", ("required", "string")),
        ("resource_type", ("required", "string")),
        ("resource_id", ("required", "string")),
        ("created_by", ("string",)),
    )),
    ("DELETE", "/mlflow/gateway/endpoints/bindings/delete", 3): ("mlflow.DeleteGatewayEndpointBinding", False, (
        ("endpoint_id", ("required", "string")),
        ("resource_type", ("required", "string")),
        ("resource_id", ("required", "string")),
    )),
    ("GET", "/mlflow/gateway/endpoints/bindings/list", 3): ("mlflow.ListGatewayEndpointBindings", False, (
        ("endpoint_id", ("string",)),
        ("resource_type", ("string",)),
        ("resource_id", ("string",)),
    )),
    ("POST", "/mlflow/gateway/model-definitions/create", 3): ("mlflow.CreateGatewayModelDefinition", False, (
        ("name", ("required", "string")),
        ("secret_id", ("required", "string")),
        ("provider", ("required", "string")),
        ("model_name", ("required", "string")),
        ("created_by", ("string",)),
    )),
    ("GET", "/mlflow/gateway/model-definitions/get", 3): ("mlflow.GetGatewayModelDefinition", False, (
        ("model_definition_id", ("required", "string")),
    )),
    ("GET", "/mlflow/gateway/model-definitions/list", 3): ("mlflow.ListGatewayModelDefinitions", False, (
        ("provider", ("string",)),
        ("secret_id", ("string",)),
    )),
    ("POST", "/mlflow/gateway/model-definitions/update", 3): ("mlflow.UpdateGatewayModelDefinition", False, (
        ("model_definition_id", ("required", "string")),
        ("name", ("string",)),
        ("secret_id", ("string",)),
        ("model_name", ("string",)),
        ("updated_by", ("string",)),
        ("provider", ("string",)),
    )),
    ("DELETE", "/mlflow/gateway/model-definitions/delete", 3): ("mlflow.DeleteGatewayModelDefinition", False, (
        ("model_definition_id", ("required", "string")),
    )),
    ("POST", "/mlflow/gateway/budgets/create", 3): ("mlflow.CreateGatewayBudgetPolicy", False, (
        ("budget_unit", ("required",)),
        ("budget_amount", ("required",)),
        ("duration", ("required",)),
        ("target_scope", ("required",)),
        ("budget_action", ("required",)),
        ("created_by", ("string",)),
        ("target_value", ("string",)),
    )),
    ("GET", "/mlflow/gateway/budgets/get", 3): ("mlflow.GetGatewayBudgetPolicy", False, (
        ("budget_policy_id", ("required", "string")),
    )),
    ("GET", "/mlflow/gateway/budgets/list", 3): ("mlflow.ListGatewayBudgetPolicies", False, (
        ("max_results", ("intlike",)),
        ("page_token", ("string",)),
    )),
    ("POST", "/mlflow/gateway/budgets/update", 3): ("mlflow.UpdateGatewayBudgetPolicy", False, (
        ("budget_policy_id", ("required", "string")),
        ("updated_by", ("string",)),
        ("target_value", ("string",)),
    )),
    ("DELETE", "/mlflow/gateway/budgets/delete", 3): ("mlflow.DeleteGatewayBudgetPolicy", False, (
        ("budget_policy_id", ("required", "string")),
    )),
    ("GET", "/mlflow/gateway/budgets/windows", 3): ("mlflow.ListGatewayBudgetWindows", False, ()),
    ("POST", "/mlflow/gateway/guardrails/create", 3): ("mlflow.CreateGatewayGuardrail", False, (
        ("name", ("required", "string")),
        ("scorer_id", ("required", "string")),
        ("scorer_version", ("required", "intlike")),
        ("stage", ("required",)),
        ("action", ("required",)),
        ("action_endpoint_id", ("string",)),
    )),
    ("GET", "/mlflow/gateway/guardrails/get", 3): ("mlflow.GetGatewayGuardrail", False, (
        ("guardrail_id", ("required", "string")),
    )),
    ("GET", "/mlflow/gateway/guardrails/list", 3): ("mlflow.ListGatewayGuardrails", False, (
        ("max_results", ("intlike",)),
        ("page_token", ("string",)),
    )),
    ("GET", "/mlflow/gateway/guardrails/list-for-endpoint", 3): ("mlflow.ListEndpointGuardrailConfigs", False, (
        ("endpoint_id", ("required", "string")),
    )),
    ("PATCH", "/mlflow/gateway/guardrails/update-config", 3): ("mlflow.UpdateEndpointGuardrailConfig", False, (
        ("endpoint_id", ("required", "string")),
        ("guardrail_id", ("required", "string")),
    )),
    ("DELETE", "/mlflow/gateway/guardrails/delete", 3): ("mlflow.DeleteGatewayGuardrail", False, (
        ("guardrail_id", ("required", "string")),
    )),
    ("POST", "/mlflow/gateway/guardrails/add-to-endpoint", 3): ("mlflow.AddGuardrailToEndpoint", False, (
        ("endpoint_id", ("required", "string")),
        ("guardrail_id", ("required", "string")),
        ("execution_order", ("intlike",)),
    )),
    ("DELETE", "/mlflow/gateway/guardrails/remove-from-endpoint", 3): ("mlflow.RemoveGuardrailFromEndpoint", False, (
        ("endpoint_id", ("required", "string")),
        ("guardrail_id", ("required", "string")),
    )),
    ("POST", "/mlflow/genai/evaluate/invoke", 3): ("", False, (
        ("experiment_id", ("required", "string")),
        ("trace_ids", ("required", "array", "item_type_string")),
        ("serialized_scorers", ("required", "array")),
        ("scorer_versions", ("array",)),
    )),
    ("POST", "/mlflow/issues/invoke", 3): ("", False, (
        ("experiment_id", ("required", "string")),
        ("trace_ids", ("required", "array", "item_type_string")),
        ("categories", ("required", "array")),
        ("provider", ("required", "string")),
        ("model", ("string",)),
        ("secret_id", ("string",)),
        ("endpoint_name", ("string",)),
    )),
    ("POST", "/mlflow/prompt-optimization/jobs", 3): ("mlflow.CreatePromptOptimizationJob", False, (
        ("experiment_id", ("string",)),
        ("source_prompt_uri", ("string", "required")),
        ("config", ("required",)),
        ("tags", ("array",)),
    )),
    ("POST", "/mlflow/prompt-optimization/jobs/search", 3): ("mlflow.SearchPromptOptimizationJobs", False, (
        ("experiment_id", ("required", "string")),
    )),
    ("GET", "/mlflow/prompt-optimization/jobs/search", 3): ("mlflow.SearchPromptOptimizationJobs", False, (
        ("experiment_id", ("required", "string")),
    )),
}
# fmt: on
