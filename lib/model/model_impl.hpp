#pragma once
// What a public Model holds (api.cpp makes them; processes.cpp serves sessions over them).
#include <memory>
#include <optional>

#include "model/tensor_parallel_model.hpp"
#include "model/weights.hpp"
#include "weft/model.hpp"

namespace weft {

struct Model::Impl {
  model::LoadedModel loaded;
  ModelInfo info;
  std::optional<Tokenizer> tokenizer;
  std::shared_ptr<const model::ShardManifest> shards;  // set for a `weft shard` directory (no weights in `loaded`)
};

}  // namespace weft
