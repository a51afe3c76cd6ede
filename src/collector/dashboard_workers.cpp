#include "collector/dashboard_workers.h"

#include <algorithm>
#include <exception>

#include <spdlog/spdlog.h>

namespace webtrap::collector {

DashboardWorkers::DashboardWorkers(std::size_t threads, std::size_t max_queued)
    : max_queued_(max_queued) {
  threads = std::max<std::size_t>(threads, 1);
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { run(); });
  }
}

DashboardWorkers::~DashboardWorkers() { stop(); }

void DashboardWorkers::stop() {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  wake_.notify_all();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) {
      thread.join();
    }
  }
  // The dropped tasks are destroyed here, outside the lock, because they
  // may own connections whose destructors run more code.
}

bool DashboardWorkers::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= max_queued_) {
      return false;
    }
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

std::size_t DashboardWorkers::queued() {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void DashboardWorkers::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        return;
      }
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& error) {
      // DashboardHttp::handle() catches query errors itself, so this is a
      // failure outside a query, such as posting the response.
      spdlog::error("dashboard: a query task failed: {}", error.what());
    }
  }
}

}  // namespace webtrap::collector
