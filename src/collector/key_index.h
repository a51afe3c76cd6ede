// An index from 64-bit keys that are hashes already (such as the
// behavioural tagger's window keys) to a small value.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace webtrap::collector {

// Open addressing with linear probing in a power-of-two table at most half
// full. An erase shifts the following slots back into the hole, so no slot
// is marked deleted and lookups stay short as keys come and go. Keys are
// multiplied before they pick a slot, because the tagger's shards select
// keys by their low bits. It replaced std::unordered_map, whose lookups
// divide by a prime bucket count and follow a node pointer.
template <typename Value>
class KeyIndex {
 public:
  // Creates an index with room for `expected_keys` before it first grows.
  explicit KeyIndex(std::size_t expected_keys) {
    std::size_t slots = 16;
    while (slots < 2 * expected_keys) {
      slots *= 2;
    }
    rebuild(slots);
  }

  // The value of `key`, or nullptr when the index does not have it. The
  // pointer is valid until the next insert or erase.
  Value* find(std::uint64_t key) {
    for (std::size_t i = home(key);; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (!slot.used) {
        return nullptr;
      }
      if (slot.key == key) {
        return &slot.value;
      }
    }
  }

  // Adds `key`, which must not be in the index yet.
  void insert(std::uint64_t key, Value value) {
    if (2 * (size_ + 1) > slots_.size()) {
      rebuild(2 * slots_.size());
    }
    place(key, std::move(value));
    ++size_;
  }

  // Removes `key`, or does nothing when the index does not have it.
  void erase(std::uint64_t key) {
    std::size_t hole = home(key);
    while (true) {
      if (!slots_[hole].used) {
        return;
      }
      if (slots_[hole].key == key) {
        break;
      }
      hole = (hole + 1) & mask_;
    }
    // A later slot of the same run moves into the hole when the hole lies
    // between its home and it, so a lookup from its home still reaches it.
    for (std::size_t next = (hole + 1) & mask_; slots_[next].used; next = (next + 1) & mask_) {
      std::size_t from_home = (next - home(slots_[next].key)) & mask_;
      std::size_t from_hole = (next - hole) & mask_;
      if (from_hole <= from_home) {
        slots_[hole] = std::move(slots_[next]);
        hole = next;
      }
    }
    slots_[hole].used = false;
    --size_;
  }

  std::size_t size() const { return size_; }
  std::size_t slotCount() const { return slots_.size(); }

 private:
  struct Slot {
    std::uint64_t key = 0;
    Value value{};
    bool used = false;
  };

  std::size_t home(std::uint64_t key) const {
    return static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ULL) >> shift_);
  }

  void place(std::uint64_t key, Value value) {
    std::size_t i = home(key);
    while (slots_[i].used) {
      i = (i + 1) & mask_;
    }
    slots_[i].key = key;
    slots_[i].value = std::move(value);
    slots_[i].used = true;
  }

  void rebuild(std::size_t slot_count) {
    std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(slot_count));
    mask_ = slot_count - 1;
    shift_ = 64 - static_cast<unsigned>(std::countr_zero(slot_count));
    for (Slot& slot : old) {
      if (slot.used) {
        place(slot.key, std::move(slot.value));
      }
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  unsigned shift_ = 0;
  std::size_t size_ = 0;
};

}  // namespace webtrap::collector
