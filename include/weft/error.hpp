#pragma once
// weft's one exception hierarchy. Everything weft throws at a load, configuration or API
// boundary derives from weft::Error; the message names the file, tensor or option at fault,
// what was expected and what was found.
#include <stdexcept>
#include <string>

namespace weft {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller asked for something that cannot be done (bad option value, bad argument).
// The command line exits with status 1 for these.
class UsageError : public Error {
 public:
  using Error::Error;
};

// A file or its contents are wrong: unreadable path, truncated or malformed file, a tensor
// with the wrong shape, an unsupported model option. The command line exits with status 2.
class InputError : public Error {
 public:
  using Error::Error;
};

}  // namespace weft
