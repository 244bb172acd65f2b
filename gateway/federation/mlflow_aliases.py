"""The proto JSON names (camelCase) of MLflow's request fields, which MLflow's parser accepts beside snake_case.

The gateway refuses them anywhere in a body where MLflow's parser reads keys as field names (see canonical.py).
Listed from the `mlflow` package's own protobuf descriptors; tests/unit/test_canonical_body.py fails when an MLflow
upgrade adds or drops one.

Not there: below `USER_KEYED_PATHS`, the fields whose JSON object holds keys of the caller's choosing (a
`map<string, string>` such as a trace's `tags`, or a `google.protobuf.Value` such as a feedback's value). MLflow's
parser takes those keys as data, never as field names, so a tag named `artifactLocation` is a tag like any other.
Derived from the request messages of the services an `mlflow server` serves; the same test fails when an upgrade
changes them, or when a path is such a field in one request message and a message in another.
"""

from __future__ import annotations

# fmt: off
PROTO_JSON_ALIASES = frozenset((
    "abortCredentialInfo", "accessKeyId", "actionEndpointId", "addTags", "aggregationType", "aliasName",
    "allowPartial", "annotationsTableName", "archiveExistingVersions", "artifactDirectoryPath", "artifactLocation",
    "artifactUri", "assessmentId", "assessmentName", "authConfig", "avgLength", "avgNumBytes", "avgNumValues",
    "awsKmsKeyArn", "awsTempCredentials", "azureUserDelegationSas", "baseFilter", "browseOnly", "budgetAction",
    "budgetAmount", "budgetPolicies", "budgetPolicy", "budgetPolicyId", "budgetUnit", "bytesStats", "catalogName",
    "catalogSchema", "clientRequestId", "commandId", "commonStats", "completedBy", "completedTimeMs",
    "completionTimestampMs", "connectionName", "createTime", "createdAt", "createdBy", "createdTime",
    "createdTimestamp", "creationTime", "creationTimeMs", "creationTimestamp", "creationTimestampMs", "creatorId",
    "credentialInfo", "credentialInfos", "currentSpend", "currentStage", "currentTaskName", "customStats",
    "dataPoints", "datasetDigest", "datasetId", "datasetInputs", "datasetName", "datasetRecordId",
    "datasetRecordIds", "datasetSummaries", "defaultArtifactRoot", "deletedCount", "deploymentJobId",
    "deploymentJobState", "deprecatedCount", "deprecatedFreq", "displayName", "effectiveTraceArchivalRetention",
    "enableComment", "encryptionDetails", "endStep", "endTime", "endTimeMs", "endpointId", "errorCode",
    "errorCodes", "errorMessage", "executionDuration", "executionOrder", "executionTimeMs", "experimentId",
    "experimentIds", "experimentName", "expirationTime", "fallbackConfig", "fallbackOrder", "featureDeps",
    "featureListLengthHistogram", "fieldName", "fileSize", "filter1Count", "filter2Count", "filterString",
    "filterString1", "filterString2", "finalEvalScores", "flatPackage", "fullName", "fullNameArg", "fullTableName",
    "functionFullName", "gcpOauthToken", "guardrailId", "highRank", "highValue", "includeAliases", "includeBrowse",
    "includeTraceCount", "inferenceTable", "initialEvalScores", "insertedCount",
    "isDatabricksSdkModelsArtifactRepositoryEnabled", "isDefault", "isDir", "isDirectory", "issueId", "issueName",
    "itemId", "itemIds", "itemType", "jobId", "jobRunId", "jobState", "jointCount", "labelSchema", "labelSchemas",
    "lastModified", "lastUpdateTime", "lastUpdateTimeMs", "lastUpdatedAt", "lastUpdatedBy", "lastUpdatedTimestamp",
    "lastUpdatedTimestampMs", "latestVersions", "leadDoc", "lifecycleStage", "linkageType", "locationId",
    "logsTableName", "lowRank", "lowValue", "mappingId", "maskedValues", "maxAttempts", "maxBurst", "maxLength",
    "maxNumBytes", "maxNumValues", "maxResults", "maxSustainedPerSecond", "maxTimestampMillis", "maxTraces",
    "maxValue", "metastoreId", "metricKey", "metricName", "metricsTableName", "minNumBytes", "minNumValues",
    "minValue", "mlflowExperiment", "modelConfig", "modelConfigs", "modelDefinition", "modelDefinitionId",
    "modelDefinitions", "modelId", "modelIds", "modelInputs", "modelJson", "modelMappings", "modelMetrics",
    "modelName", "modelOutputs", "modelParams", "modelType", "modelVersion", "modelVersionDependencies",
    "modelVersionInfo", "modelVersionLineageInfo", "modelVersions", "multiSelect", "negativeLabel", "newName",
    "newOwner", "nextPageToken", "notebookRunId", "npmiSmoothed", "numExamples", "numMissing", "numNan",
    "numNonMissing", "numParts", "numStats", "numUndefined", "numValuesHistogram", "numZeros", "oauthToken",
    "omitColumns", "omitConstraints", "omitDependencies", "omitProperties", "omitStorageCredentialName",
    "omitUsername", "optimizedPromptUri", "optimizerConfigJson", "optimizerType", "orderBy", "originalProtoPath",
    "otelLogsTableName", "otelSpansTableName", "packageName", "pageToken", "partEtags", "partNumber", "passFail",
    "percentileValue", "pipelineId", "pipelineUpdateId", "positiveLabel", "presignedUrl", "progressUpdatedAt",
    "promptVersion", "promptVersions", "queueId", "queueType", "r2TempCredentials", "rankHistogram", "rateLimit",
    "registeredModel", "registeredModelInfo", "registeredModels", "requestId", "requestIds", "requestMetadata",
    "requestPreview", "requestTime", "resourceId", "resourceType", "responseBody", "responsePreview",
    "responseStatus", "reviewQueue", "reviewQueues", "rootCauses", "rootUri", "routingStrategy", "rpcDocTitle",
    "runExperimentId", "runId", "runIds", "runInfo", "runLink", "runName", "runState", "runTrackingServerId",
    "runUuid", "runViewType", "runWorkspaceId", "sampleCount", "sasToken", "schemaId", "schemaIds", "schemaName",
    "scorerId", "scorerName", "scorerVersion", "secretAccessKey", "secretId", "secretName", "secretValue",
    "secretsAvailable", "securableFullName", "securableType", "serializationFormat", "serializedScorer",
    "serializedValue", "sessionToken", "signedUri", "sourceData", "sourceDatabricksRequestId", "sourceId",
    "sourceInferenceTable", "sourcePromptUri", "sourceRunId", "sourceSecurables", "sourceType", "spanId",
    "spansTableName", "sqlWarehouseId", "sseEncryptionDetails", "stackTrace", "startStep", "startTime",
    "startTimeMs", "statusMessage", "stdDev", "storageLocation", "storageMode", "stringStats", "structStats",
    "subentityName", "tableFullName", "tableId", "tablePrefix", "tableType", "tagKey", "targetScope",
    "targetSecurable", "targetValue", "taskKey", "taskRunId", "timeIntervalSeconds", "timestampMs", "topValues",
    "totNumValues", "totalCount", "traceArchivalConfig", "traceCount", "traceData", "traceId", "traceIds",
    "traceInfo", "traceInfos", "traceLocation", "traceMetadata", "tracesDeleted", "ucSchema", "ucTablePrefix",
    "updateMask", "updateSchemaIds", "updateUsers", "updatedAt", "updatedBy", "updatedCount",
    "uploadCredentialInfo", "uploadCredentialInfos", "uploadId", "usageTracking", "userId", "versionNum",
    "viewType", "webhookId", "weightedCommonStats", "weightedNumExamples", "weightedNumericStats",
    "weightedStringStats", "windowEndMs", "windowStartMs", "workspaceName",
))

# Paths from a request body's top level; `[]` steps into a list, as MLflow's repeated fields are written.
USER_KEYED_PATHS = frozenset((
    "assessment.expectation.value", "assessment.feedback.value", "assessment.metadata", "auth_config",
    "secret_value", "trace.trace_info.assessments[].expectation.value",
    "trace.trace_info.assessments[].feedback.value", "trace.trace_info.assessments[].metadata",
    "trace.trace_info.tags", "trace.trace_info.trace_metadata",
))
# fmt: on
