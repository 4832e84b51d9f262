// Internal: narrative rules txt-1 (allowed elements and attributes) and
// txt-2 (some non-whitespace content).
#pragma once

#include <string>
#include <string_view>

namespace espace::profiles {

// `xhtml` is a well-formed div as check_xhtml_div() normalises it. Returns
// the txt-1 violation ("" if none); *has_content tells txt-2.
std::string narrative_rule_violation(std::string_view xhtml, bool* has_content);

}  // namespace espace::profiles
