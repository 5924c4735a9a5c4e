#include "io/weight_names.hpp"
#include "testing.hpp"

using namespace weft::io;

TEST_CASE("weight-name table round trips HF names") {
  for (const auto& n : weight_names()) {
    const std::string name = n.per_layer ? layer_name(n.hf, 7) : std::string(n.hf);
    const auto parsed = parse_hf_name(name);
    REQUIRE(parsed.has_value());
    CHECK(parsed->role == n.role);
    CHECK(parsed->layer == (n.per_layer ? 7 : -1));
  }
  CHECK_FALSE(parse_hf_name("model.layers.x.mlp.up_proj.weight").has_value());
  CHECK_FALSE(parse_hf_name("model.layers.1.self_attn.q_proj.bias").has_value());
  CHECK(weight_name(WeightRole::Output).required == false);
}
