// Internal: the regular expression matcher behind matches()/replaceMatches().
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace espace::fhirpath {

class Regex {
 public:
  Regex() = default;
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // `full`: the whole subject must match (matchesFull). Error text in *error.
  bool compile(std::string_view pattern, bool full, std::string* error);
  bool search(const std::string& subject) const;
  // Replaces every match; "$1".."$9" in the replacement insert groups.
  std::string replace_all(const std::string& subject, const std::string& replacement) const;

 private:
  struct Impl;
  Impl* impl_ = nullptr;
};

}  // namespace espace::fhirpath
