// `webtrap collector setup-elasticsearch`: prepares a cluster for the
// Elasticsearch output.
#pragma once

#include <filesystem>

#include "collector/elasticsearch_output.h"

namespace webtrap::collector {

// Checks the cluster version with GET / (Elasticsearch 7.9 or later, or
// OpenSearch), installs the ILM policy and the composable index template
// from TEMPLATE_DIR, and creates the data stream. Logs each step.
//
// The template comes from index-template.json, rewritten so that its
// index_patterns match only the configured target (data_stream, or index
// with each strftime field as a wildcard) and data_stream is present only
// for a data stream. Its policy name P is the file's index.lifecycle.name.
// For a data stream, the policy P comes from ilm-policy.json and the
// template is named P. For dated indices, both are named P-dated and the
// policy comes from ilm-policy-dated.json (ilm-policy.json when missing).
// OpenSearch has no ILM: there no policy is installed and the template
// goes without index.lifecycle.name. With options.kibana set, it then
// imports the Kibana dashboard (see importKibanaDashboard) with its data
// view on the same pattern as the template.
//
// Throws std::runtime_error naming the failed step, the HTTP status and the
// server's message, or TransientError when the cluster cannot be reached.
void setupElasticsearch(const ElasticsearchOptions& options,
                        const std::filesystem::path& template_dir);

}  // namespace webtrap::collector
