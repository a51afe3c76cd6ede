// The record pipeline: requests that got their response wait in a bounded queue for
// inspection on worker threads, then go to the spool as audit records.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "probe/capture.h"
#include "probe/config.h"
#include "probe/inspector.h"
#include "probe/journal.h"
#include "probe/record.h"
#include "probe/response.h"
#include "probe/spool.h"

namespace webtrap::probe {

struct PipelineJob {
  CapturedRequest request;
  PersonaResponse response;
  RouteOutcome outcome;
  std::string event_id;
  std::uint64_t journal_ticket = 0;  // from InspectionJournal::append, 0 when not journaled
  // Whether journalBeforeResponse() ran for this job, so that submit() does
  // not write (or count a failed write) a second time.
  bool journal_attempted = false;
};

class Pipeline {
 public:
  // `meta` carries the fields shared by every record (sensor, persona,
  // engine); the event id is set per job. With a `journal`, each queued job
  // is written to it first and marked done once its record is in the spool,
  // so a SIGKILL loses no queued job. Without one, it does.
  Pipeline(const PipelineConfig& config, Inspector& inspector, Spool& spool, RecordMeta meta,
           MetricsRegistry& metrics, InspectionJournal* journal = nullptr);
  ~Pipeline();

  // Queues a job for inspection. When the queue is full the job is recorded
  // at once, uninspected and marked as shed, so no record is lost to load.
  // Never blocks on inspection. With a journal, a queued job that
  // journalBeforeResponse() did not write is first written to it, so that
  // a kill leaves its record, with status "interrupted", to the next start.
  void submit(PipelineJob job);

  // Writes the journal entry of a request before its response is sent, so
  // that a SIGKILL right after the client has read the response still finds
  // the request at the next start. Returns the ticket for
  // PipelineJob::journal_ticket, or 0 without a journal or when the write
  // failed. The entry is written even when the queue is full, because a
  // shed job reaches the spool only after its response. submit() journals
  // a job without PipelineJob::journal_attempted if it queues it.
  std::uint64_t journalBeforeResponse(const CapturedRequest& request,
                                      const PersonaResponse& response,
                                      const RouteOutcome& outcome, const std::string& event_id);

  // Stops taking work and joins the workers. Queued jobs are inspected until
  // the queue is empty or `drain_timeout_ms` passes. The jobs still queued
  // then are recorded uninspected and marked as shed. So a supervisor's stop
  // timeout (10 s in Docker) does not kill the probe before it writes them.
  // Then the journal is closed, so a clean stop leaves none to recover.
  void drain();

  std::size_t queueDepth() const;

 private:
  void runWorker();
  bool hasRoomLocked(std::uint64_t bytes) const;
  std::uint64_t writeJournalEntry(const CapturedRequest& request, const PersonaResponse& response,
                                  const RouteOutcome& outcome, const std::string& event_id);
  void finishJob(const PipelineJob& job, const InspectionResult& inspection);
  void writeRecord(const PipelineJob& job, const InspectionResult& inspection);
  static std::uint64_t jobBytes(const PipelineJob& job);
  static std::uint64_t jobBytes(const CapturedRequest& request, const PersonaResponse& response);

  PipelineConfig config_;
  Inspector& inspector_;
  Spool& spool_;
  RecordMeta meta_;
  InspectionJournal* journal_;

  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable queue_empty_;
  std::deque<PipelineJob> queue_;
  std::uint64_t queued_bytes_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;

  Counter& submitted_;
  Counter& shed_;
  Counter& records_written_;
  Counter& records_dropped_;
  Gauge& queue_depth_;
};

}  // namespace webtrap::probe
