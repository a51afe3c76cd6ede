// A small, bounded thread pool for the dashboard's queries, so that a slow
// query runs beside the admin listener's I/O threads instead of on one of
// them.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace webtrap::collector {

class DashboardWorkers {
 public:
  // Starts `threads` threads (at least 1). At most `max_queued` tasks wait
  // for a thread; tasks that are running do not count.
  DashboardWorkers(std::size_t threads, std::size_t max_queued);
  // Calls stop().
  ~DashboardWorkers();
  DashboardWorkers(const DashboardWorkers&) = delete;
  DashboardWorkers& operator=(const DashboardWorkers&) = delete;

  // Queues `task`. Returns false, without queueing it, when `max_queued`
  // tasks are already waiting or the pool is stopping.
  bool submit(std::function<void()> task);
  // Returns the number of tasks waiting for a thread.
  std::size_t queued();
  // Waits for the running tasks to end and stops the threads. Queued tasks
  // are dropped without running, and submit() returns false from then on.
  // Safe to call more than once.
  void stop();

 private:
  void run();

  const std::size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace webtrap::collector
