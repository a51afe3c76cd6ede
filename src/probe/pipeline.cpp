#include "probe/pipeline.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>

#include <spdlog/spdlog.h>

#include "probe/journal_entry.h"

namespace webtrap::probe {

Pipeline::Pipeline(const PipelineConfig& config, Inspector& inspector, Spool& spool,
                   RecordMeta meta, MetricsRegistry& metrics, InspectionJournal* journal)
    : config_(config),
      inspector_(inspector),
      spool_(spool),
      meta_(std::move(meta)),
      journal_(journal),
      submitted_(metrics.counter("webtrap_pipeline_jobs_total",
                                 "Answered requests handed to the record pipeline.")),
      shed_(metrics.counter("webtrap_inspections_shed_total",
                            "Requests recorded without inspection because the queue was full.")),
      records_written_(
          metrics.counter("webtrap_records_written_total", "Audit records appended to the spool.")),
      records_dropped_(metrics.counter(
          "webtrap_records_dropped_total",
          "Audit records the spool did not store (disk cap or write error).")),
      queue_depth_(
          metrics.gauge("webtrap_inspection_queue_depth", "Requests waiting for inspection.")) {
  for (std::uint32_t i = 0; i < config_.workers; ++i) {
    workers_.emplace_back([this] { runWorker(); });
  }
}

Pipeline::~Pipeline() { drain(); }

std::uint64_t Pipeline::jobBytes(const PipelineJob& job) {
  return jobBytes(job.request, job.response);
}

std::uint64_t Pipeline::jobBytes(const CapturedRequest& request, const PersonaResponse& response) {
  return request.body.size() + request.raw_head.size() + response.body.size() + 512;
}

bool Pipeline::hasRoomLocked(std::uint64_t bytes) const {
  return queue_.size() < config_.queue_limit &&
         queued_bytes_ + bytes <= config_.queue_max_bytes && !stopping_;
}

// Writes the job to the journal. The entry contains the inputs of its
// record, so this costs copies of the request's bytes. Recovery serializes
// the record (status "interrupted") only for a job the probe did not finish.
std::uint64_t Pipeline::writeJournalEntry(const CapturedRequest& request,
                                          const PersonaResponse& response,
                                          const RouteOutcome& outcome,
                                          const std::string& event_id) {
  std::string entry;
  entry.reserve(jobBytes(request, response) + request.raw_head.size());
  encodeJournalEntry(entry, request, response, outcome, meta_);
  return journal_->append(event_id, entry);
}

std::uint64_t Pipeline::journalBeforeResponse(const CapturedRequest& request,
                                              const PersonaResponse& response,
                                              const RouteOutcome& outcome,
                                              const std::string& event_id) {
  // Also with the queue full: a shed job is spooled only after its
  // response, so it needs the entry as much as a queued one.
  if (journal_ == nullptr) {
    return 0;
  }
  return writeJournalEntry(request, response, outcome, event_id);
}

void Pipeline::submit(PipelineJob job) {
  submitted_.inc();
  std::uint64_t bytes = jobBytes(job);
  if (journal_ != nullptr && !job.journal_attempted) {
    // The journal write happens outside the lock, so workers keep taking
    // jobs meanwhile. A full queue skips it: a shed job is written at once.
    bool room = false;
    {
      std::lock_guard lock(mutex_);
      room = hasRoomLocked(bytes);
    }
    if (room) {
      job.journal_ticket = writeJournalEntry(job.request, job.response, job.outcome, job.event_id);
    }
  }
  {
    std::lock_guard lock(mutex_);
    if (hasRoomLocked(bytes)) {
      queued_bytes_ += bytes;
      queue_.push_back(std::move(job));
      queue_depth_.set(static_cast<std::int64_t>(queue_.size()));
      ready_.notify_one();
      return;
    }
  }

  // Shedding inspection keeps the record: it is written now, marked as shed.
  shed_.inc();
  InspectionResult shed;
  shed.status = InspectionStatus::kShed;
  finishJob(job, shed);
}

void Pipeline::runWorker() {
  // Inspection threads run at a lower priority so that under load the
  // threads that send responses keep the CPU. Linux applies nice per thread.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), config_.worker_nice);

  while (true) {
    PipelineJob job;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= jobBytes(job);
      queue_depth_.set(static_cast<std::int64_t>(queue_.size()));
      if (queue_.empty()) {
        queue_empty_.notify_all();
      }
    }

    InspectionResult result = inspector_.inspect(job.request, job.response, job.outcome,
                                                 job.event_id);
    job.request.timings.inspection_us = result.duration_us;
    finishJob(job, result);
  }
}

// Writes the job's record to the spool and marks its journal entry done.
// A record the spool drops is marked done too: the spool counted it, and a
// recovery would meet the same disk cap.
void Pipeline::finishJob(const PipelineJob& job, const InspectionResult& inspection) {
  writeRecord(job, inspection);
  if (journal_ != nullptr) {
    journal_->markDone(job.journal_ticket, job.event_id);
  }
}

void Pipeline::writeRecord(const PipelineJob& job, const InspectionResult& inspection) {
  RecordMeta meta = meta_;
  meta.event_id = job.event_id;
  std::string record = serializeRecord(job.request, job.response, job.outcome, inspection, meta);
  if (spool_.append(record) == AppendResult::kWritten) {
    records_written_.inc();
  } else {
    records_dropped_.inc();
  }
}

void Pipeline::drain() {
  std::deque<PipelineJob> uninspected;
  {
    std::unique_lock lock(mutex_);
    if (stopping_ && workers_.empty()) {
      return;
    }
    stopping_ = true;
    ready_.notify_all();
    queue_empty_.wait_for(lock, std::chrono::milliseconds(config_.drain_timeout_ms),
                          [this] { return queue_.empty(); });
    uninspected.swap(queue_);
    queued_bytes_ = 0;
    queue_depth_.set(0);
  }

  if (!uninspected.empty()) {
    spdlog::warn("pipeline: recording {} queued requests uninspected because "
                 "pipeline.drain_timeout ({} ms) passed while stopping",
                 uninspected.size(), config_.drain_timeout_ms);
    InspectionResult shed;
    shed.status = InspectionStatus::kShed;
    shed.error = "not inspected: the probe stopped and pipeline.drain_timeout passed";
    for (const PipelineJob& job : uninspected) {
      shed_.inc();
      finishJob(job, shed);
    }
  }
  for (auto& worker : workers_) {
    worker.join();
  }
  workers_.clear();
  spool_.flush();
  if (journal_ != nullptr) {
    journal_->close();
  }
}

std::size_t Pipeline::queueDepth() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

}  // namespace webtrap::probe
