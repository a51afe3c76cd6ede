// `webtrap collector setup-elasticsearch`: prepares a cluster for the
// Elasticsearch output.
#pragma once

#include <filesystem>

#include "collector/elasticsearch_output.h"

namespace webtrap::collector {

// Checks the cluster version with GET / (7.10 or later, or OpenSearch), then
// installs the ILM policy from TEMPLATE_DIR/ilm-policy.json as
// "webtrap-events" and the composable index template from
// TEMPLATE_DIR/index-template.json as "webtrap-events". The template's index
// patterns are set to match the configured data stream or index pattern.
// Logs each step. Throws std::runtime_error naming the failed step, the
// HTTP status and the server's reason.
void setupElasticsearch(const ElasticsearchOptions& options,
                        const std::filesystem::path& template_dir);

}  // namespace webtrap::collector
