// The in-memory form of a FHIR resource: a tree of Nodes typed by Definitions.
//
// One representation serves JSON, XML, FHIRPath, validation and search
// indexing. Primitive values keep their exact lexical form ("1.50" stays
// "1.50"); conversions to numbers happen where they are needed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/definitions.h"

namespace espace::fhir {

struct Node {
  // The element this node fills in its parent; nullptr for a root resource
  // (and for a resource inside Bundle.entry.resource / contained the def is
  // that element's, while `type` is the concrete resource type).
  const ElementDef* def = nullptr;
  // The concrete type: the chosen type of a choice element, the resource
  // type of a resource, the backbone type of a backbone element.
  const TypeDef* type = nullptr;
  // The JSON property name: "valueQuantity", "given", or the resource type for a root.
  // Points into Definitions (never dangles while they live).
  std::string_view name;
  // Primitive value in its JSON/XML lexical form; meaningful when has_value.
  // For xhtml (Narrative.div) it is the XHTML text.
  std::string value;
  bool has_value = false;
  // Children in definition order (ElementDef::order); the items of a
  // repeating element are adjacent, in their original order. A primitive's
  // children are its id and extensions.
  std::vector<Node> children;

  bool is_primitive() const { return type && type->is_primitive(); }
  bool is_resource() const { return type && type->is_resource(); }

  // Children filling the element called `element_name` ("value" matches
  // valueQuantity etc.; "valueQuantity" matches only that choice).
  template <typename F>
  void for_each_child(std::string_view element_name, F&& f) const {
    for (const Node& c : children)
      if (c.def && (c.def->name == element_name || c.name == element_name)) f(c);
  }
  // First child of that element, or nullptr.
  const Node* child(std::string_view element_name) const;
  // Value of the first primitive child of that element, or "" when absent.
  std::string_view child_value(std::string_view element_name) const;
};

// Inserts `child` among parent.children keeping definition order (after any
// existing items of the same element). Used by parsers and by code that
// builds resources (meta, OperationOutcome, Bundles).
void insert_ordered(Node& parent, Node child);

// Sets a primitive element given by a dotted element path from `resource`
// ("id", "meta.versionId", "meta.lastUpdated"), creating missing intermediate
// complex nodes in definition order. An existing value is replaced (its
// extensions are kept); on a repeating element all items are replaced by one.
// Errors (category Internal: the path is the caller's, not client input) when
// a segment is not an element, is a choice, or the last one is not primitive.
Status set_primitive(Node& resource, std::string_view dotted_path, std::string value);

// Removes every child filling `element_name` (same matching as Node::child).
void remove_element(Node& parent, std::string_view element_name);

// The resource type name ("" when `resource` has no type) and the value of its id.
std::string_view resource_type(const Node& resource);
std::string_view resource_id(const Node& resource);

}  // namespace espace::fhir
