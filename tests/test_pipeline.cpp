// PipelineState and PipelineConfig: bookkeeping properties over random operation sequences.
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "parallel/pipeline_state.hpp"
#include "testing.hpp"
#include "weft/error.hpp"

using weft::par::PipelineConfig;
using weft::par::PipelineState;

TEST_CASE("two pushes before an advance: the second is refused and the first is kept") {
  PipelineState p(3, 4);
  CHECK(p.can_accept());
  CHECK(p.push() == 0);
  CHECK_FALSE(p.can_accept());
  CHECK_THROWS_AS(p.push(), weft::UsageError);
  CHECK(p.at_stage(0) == 0u);
  CHECK(p.depth() == 1);
  p.advance();
  CHECK(p.push() == 1);
  CHECK(p.at_stage(0) == 1u);
  CHECK(p.at_stage(1) == 0u);
  for (int i = 0; i < 3; ++i) p.advance();
  REQUIRE(p.has_output());
  CHECK(p.pop() == 0);
  CHECK(p.pop() == 1);
  CHECK_FALSE(p.has_output());
  CHECK_THROWS_AS(p.pop(), weft::UsageError);
  CHECK(p.empty());
}

TEST_CASE("a micro-batch comes out after exactly num_stages advances") {
  for (int stages = 1; stages <= 5; ++stages) {
    PipelineState p(stages, 1);
    p.push();
    for (int k = 0; k < stages; ++k) {
      CHECK(p.at_stage(k) == 0u);
      CHECK_FALSE(p.has_output());
      p.advance();
    }
    CHECK(p.has_output());
    CHECK(p.pop() == 0);
  }
}

TEST_CASE("full pipeline: depth counts unpopped outputs and push is refused at max_depth") {
  PipelineState p(2, 2);
  p.push();
  p.advance();
  p.push();
  CHECK(p.depth() == 2);
  p.advance();  // 0 leaves the last stage but is still held until popped
  CHECK(p.has_output());
  CHECK(p.depth() == 2);
  CHECK_FALSE(p.can_accept());
  CHECK_THROWS_AS(p.push(), weft::UsageError);
  CHECK(p.pop() == 0);
  CHECK(p.can_accept());
}

TEST_CASE("bad sizes are refused") {
  CHECK_THROWS_AS(PipelineState(0, 1), weft::UsageError);
  CHECK_THROWS_AS(PipelineState(1, 0), weft::UsageError);
  CHECK_THROWS_AS(PipelineConfig::for_model(0, 64, 1 << 20), weft::UsageError);
}

// Random sequences of push / advance / pop, checked against what each micro-batch must see: it
// enters stage 0 on push, is in stage k after k advances, comes out after num_stages advances,
// and leaves in push order, exactly once.
TEST_CASE("property: random operation sequences") {
  std::mt19937 rng(20261122);
  std::int64_t sequences = 0, operations = 0, completed = 0;
  for (int stages = 1; stages <= 6; ++stages) {
    for (int depth = 1; depth <= 8; ++depth) {
      for (int rep = 0; rep < 25; ++rep) {
        PipelineState p(stages, depth);
        std::map<std::uint64_t, int> advances_seen;  // id -> advances since its push
        std::uint64_t pushed = 0, popped = 0;
        std::vector<std::uint64_t> finished;          // left the last stage, not yet popped
        const int n_ops = 200;
        for (int op = 0; op < n_ops; ++op) {
          const int kind = std::uniform_int_distribution<int>(0, 2)(rng);
          if (kind == 0) {
            const bool expect = p.at_stage(0) == std::nullopt &&
                                static_cast<int>(advances_seen.size() + finished.size()) < depth;
            CHECK(p.can_accept() == expect);
            if (expect) {
              const std::uint64_t id = p.push();
              CHECK(id == pushed);
              advances_seen[id] = 0;
              ++pushed;
            } else {
              const auto before = p.at_stage(0);
              const int d = p.depth();
              CHECK_THROWS_AS(p.push(), weft::UsageError);
              CHECK(p.at_stage(0) == before);  // a refused push changes nothing
              CHECK(p.depth() == d);
            }
          } else if (kind == 1) {
            p.advance();
            for (auto it = advances_seen.begin(); it != advances_seen.end();) {
              if (++it->second == stages) {
                finished.push_back(it->first);
                it = advances_seen.erase(it);
              } else {
                ++it;
              }
            }
          } else {
            CHECK(p.has_output() == !finished.empty());
            if (!finished.empty()) {
              CHECK(p.pop() == finished.front());
              CHECK(finished.front() == popped);  // in push order
              finished.erase(finished.begin());
              ++popped;
              ++completed;
            }
          }
          // Every held micro-batch is where its advance count says, and nowhere else.
          int occupied = 0;
          for (int k = 0; k < stages; ++k) {
            const auto at = p.at_stage(k);
            if (!at) continue;
            ++occupied;
            REQUIRE(advances_seen.count(*at) == 1);
            CHECK(advances_seen[*at] == k);
          }
          CHECK(occupied == static_cast<int>(advances_seen.size()));
          CHECK(p.depth() <= depth);
          CHECK(p.depth() == static_cast<int>(advances_seen.size() + finished.size()));
          ++operations;
        }
        // Drain: everything pushed comes out exactly once.
        for (int k = 0; k < stages; ++k) p.advance();
        while (p.has_output()) {
          CHECK(p.pop() == popped);
          ++popped;
          ++completed;
        }
        CHECK(popped == pushed);
        CHECK(p.empty());
        ++sequences;
      }
    }
  }
  MESSAGE("pipeline property test: " << sequences << " sequences, " << operations << " operations, " << completed
                                     << " micro-batches completed");
}

TEST_CASE("PipelineConfig::for_model sizes micro-batches by the memory budget") {
  const PipelineConfig d;
  CHECK(d.num_micro_batches == 4);
  CHECK_FALSE(d.async_execution);
  CHECK(d.memory_budget == std::size_t{512} << 20);
  // TinyLlama width: 2 x 64 x 2048 x 4 B = 1 MiB per micro-batch.
  CHECK(PipelineConfig::bytes_per_micro_batch(2048) == std::size_t{1} << 20);
  auto c = PipelineConfig::for_model(22, 2048, std::size_t{3} << 20);
  CHECK(c.num_micro_batches == 3);
  CHECK(c.async_execution);
  c = PipelineConfig::for_model(22, 2048, std::size_t{512} << 20);
  CHECK(c.num_micro_batches == 22);  // never more than layers
  c = PipelineConfig::for_model(22, 2048, 1000);
  CHECK(c.num_micro_batches == 1);
  CHECK_FALSE(c.async_execution);
}
