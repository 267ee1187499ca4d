//! `$filter`: a recursive-descent parser from OData text to the typed [`Filter`].
//!
//! Grammar (keywords and property names case-sensitive, as OData spells them):
//!
//! ```text
//! filter     = or
//! or         = and *( "or" and )
//! and        = unary *( "and" unary )
//! unary      = "not" unary / primary
//! primary    = "(" or ")"
//!            / "startswith" "(" "displayName" "," string ")"
//!            / property operator literal
//!            / property "in" "(" literal *( "," literal ) ")"
//!            / boolean-property                 ; same as `boolean-property eq true`
//! operator   = "eq" / "ne" / "gt" / "ge" / "lt" / "le"
//! ```
//!
//! `and` binds tighter than `or`; `not` applies to the condition that follows it, so
//! `not displayName eq 'a'` means `not (displayName eq 'a')` (strict OData would read a
//! type error there; for booleans both readings agree). Literals are typed by the property:
//! `'…'` strings (a quote doubled inside) for `displayName` and `id`; enum members as
//! `'enabled'` or `microsoft.graph.deviceManagementPartnerTenantState'enabled'` for
//! `partnerState`; `true`/`false` for the `*Onboarded` flags, which take only `eq` and `ne`;
//! unquoted DateTimeOffset values such as `2024-01-01T00:00:00Z` for
//! `lastHeartbeatDateTime`. Positions in messages are 0-based character offsets into the
//! decoded `$filter` value, as OData libraries report them.
//!
//! Chains of `and`/`or` become balanced trees (the operators are associative), so a long flat
//! chain is shallow; a parenthesised group (or an `in` list) of the same operator is spliced
//! into the chain around it, so that `a and (b and c)` and `(a and b) and c` are one filter.
//! Parentheses (those of `in` lists included) and `not` are limited to [`MAX_FILTER_DEPTH`]
//! levels and the text to [`MAX_FILTER_CHARS`] characters.

use cmp_application::query::{Comparison, Filter, FilterField, FilterValue};
use cmp_domain::{PartnerId, PartnerState, Platform};
use cmp_graph_model::{PARTNER_PROPERTIES, datetime};

use super::{MAX_FILTER_CHARS, MAX_FILTER_DEPTH, QueryError};

/// The qualified name of the `partnerState` enum type, as an OData enum literal spells it.
const STATE_TYPE: &str = "microsoft.graph.deviceManagementPartnerTenantState";

/// Parses a decoded `$filter` value.
///
/// # Errors
/// [`QueryError`] naming the problem and its position.
pub fn parse(text: &str) -> Result<Filter, QueryError> {
    let length = text.chars().count();
    if length > MAX_FILTER_CHARS {
        return Err(QueryError::new(format!(
            "$filter: {length} characters is longer than the {MAX_FILTER_CHARS} allowed"
        )));
    }
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(QueryError::new("$filter: the expression is empty"));
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        depth: 0,
        end: length,
    };
    let filter = parser.or()?;
    if let Some(token) = parser.peek() {
        return Err(unexpected(token, "and, or, or the end of the expression"));
    }
    Ok(filter)
}

/// The canonical OData text of `filter`: literals in their normal form, `in` lists spelt out
/// as `or` chains, and parentheses only where precedence needs them. The text of a filter
/// [`parse`] returned parses back to that filter, and nests no deeper than the text it was
/// parsed from (a fully parenthesised form would nest deeper and could pass the limit).
pub fn canonical(filter: &Filter) -> String {
    match filter {
        Filter::Compare { field, op, value } => format!(
            "{} {} {}",
            field_name(*field),
            operator_name(*op),
            literal_text(value)
        ),
        Filter::StartsWith { prefix } => format!("startswith(displayName,{})", quoted(prefix)),
        Filter::And(left, right) => {
            let operand = |f: &Filter| grouped_if(f, matches!(f, Filter::Or(..)));
            format!("{} and {}", operand(left), operand(right))
        }
        Filter::Or(left, right) => format!("{} or {}", canonical(left), canonical(right)),
        Filter::Not(inner) => format!(
            "not {}",
            grouped_if(inner, matches!(**inner, Filter::And(..) | Filter::Or(..)))
        ),
    }
}

/// The canonical text of `filter`, in parentheses when `group` says precedence needs them.
fn grouped_if(filter: &Filter, group: bool) -> String {
    if group {
        format!("({})", canonical(filter))
    } else {
        canonical(filter)
    }
}

fn error_at(position: usize, message: impl std::fmt::Display) -> QueryError {
    QueryError::new(format!("$filter: {message} at position {position}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A run of characters other than whitespace, `(`, `)`, `,` and `'`: a keyword, a
    /// property, a function name, or an unquoted literal.
    Word(String),
    /// A `'…'` literal, unescaped.
    Text(String),
    Open,
    Close,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// 0-based character offset of the token's first character.
    position: usize,
    /// Whether the token follows the previous one with no whitespace between.
    adjacent: bool,
}

impl Token {
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Word(word) => format!("'{word}'"),
            Kind::Text(text) => format!("string literal {}", quoted(text)),
            Kind::Open => "'('".to_owned(),
            Kind::Close => "')'".to_owned(),
            Kind::Comma => "','".to_owned(),
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(&self.kind, Kind::Word(w) if w == word)
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    let mut previous_end = usize::MAX;
    while let Some(&c) = chars.get(index) {
        if c.is_whitespace() {
            index += 1;
            continue;
        }
        let start = index;
        let kind = match c {
            '(' => {
                index += 1;
                Kind::Open
            }
            ')' => {
                index += 1;
                Kind::Close
            }
            ',' => {
                index += 1;
                Kind::Comma
            }
            '\'' => {
                let mut value = String::new();
                index += 1;
                loop {
                    match chars.get(index) {
                        None => {
                            return Err(error_at(start, "unterminated string literal starting"));
                        }
                        Some('\'') if chars.get(index + 1) == Some(&'\'') => {
                            value.push('\'');
                            index += 2;
                        }
                        Some('\'') => {
                            index += 1;
                            break;
                        }
                        Some(&other) => {
                            value.push(other);
                            index += 1;
                        }
                    }
                }
                Kind::Text(value)
            }
            _ => {
                let end = chars[index..]
                    .iter()
                    .position(|c| c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\''))
                    .map_or(chars.len(), |offset| index + offset);
                let word = chars[index..end].iter().collect();
                index = end;
                Kind::Word(word)
            }
        };
        tokens.push(Token {
            kind,
            position: start,
            adjacent: start == previous_end,
        });
        previous_end = index;
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// Current nesting of parentheses and `not`.
    depth: usize,
    /// Length of the text, the position reported for "the end".
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.peek().is_some_and(|t| t.is_word(word));
        if found {
            self.next += 1;
        }
        found
    }

    /// The next token, which must exist; `expected` says what the grammar wants there.
    fn expect_token(&mut self, expected: &str) -> Result<Token, QueryError> {
        self.advance().ok_or_else(|| {
            error_at(
                self.end,
                format!("expected {expected} but the expression ends"),
            )
        })
    }

    fn expect(&mut self, kind: &Kind, expected: &str) -> Result<Token, QueryError> {
        let token = self.expect_token(expected)?;
        if &token.kind == kind {
            Ok(token)
        } else {
            Err(unexpected(&token, expected))
        }
    }

    fn enter(&mut self, position: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(error_at(
                position,
                format!("nesting deeper than {MAX_FILTER_DEPTH} levels of parentheses and not"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, QueryError> {
        let mut terms = vec![self.and()?];
        while self.eat_word("or") {
            terms.push(self.and()?);
        }
        Ok(chain(terms, Junction::Or))
    }

    fn and(&mut self) -> Result<Filter, QueryError> {
        let mut terms = vec![self.unary()?];
        while self.eat_word("and") {
            terms.push(self.unary()?);
        }
        Ok(chain(terms, Junction::And))
    }

    fn unary(&mut self) -> Result<Filter, QueryError> {
        let Some(token) = self.peek() else {
            return Err(error_at(
                self.end,
                "expected a condition but the expression ends",
            ));
        };
        // Checked before function calls, so `not(…)` is the same operator as `not (…)`.
        if token.is_word("not") {
            let position = token.position;
            self.next += 1;
            self.enter(position)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter, QueryError> {
        let token = self.expect_token("a condition")?;
        match &token.kind {
            Kind::Open => {
                self.enter(token.position)?;
                let inner = self.or()?;
                self.expect(
                    &Kind::Close,
                    &format!("')' to close the '(' at position {}", token.position),
                )?;
                self.depth -= 1;
                Ok(inner)
            }
            Kind::Word(word) if self.peek().is_some_and(|t| t.kind == Kind::Open) => {
                if word == "startswith" {
                    self.starts_with()
                } else {
                    Err(error_at(
                        token.position,
                        format!(
                            "function '{word}' is not supported (the only function is startswith(displayName, '…'))"
                        ),
                    ))
                }
            }
            Kind::Word(word) => {
                let field = filter_field(word, token.position)?;
                self.condition(field)
            }
            _ => Err(unexpected(&token, "a property name, '(' or not")),
        }
    }

    /// `startswith(displayName, '…')`, the function name already read.
    fn starts_with(&mut self) -> Result<Filter, QueryError> {
        self.expect(&Kind::Open, "'(' after startswith")?;
        let property = self.expect_token("displayName")?;
        if !property.is_word("displayName") {
            return Err(error_at(
                property.position,
                format!(
                    "startswith takes displayName as its first argument, not {}",
                    property.describe()
                ),
            ));
        }
        self.expect(&Kind::Comma, "',' after displayName")?;
        let literal = self.expect_token("a string literal such as 'Contoso'")?;
        let Kind::Text(prefix) = literal.kind else {
            return Err(unexpected(&literal, "a string literal such as 'Contoso'"));
        };
        self.expect(&Kind::Close, "')' to close startswith")?;
        Ok(Filter::StartsWith { prefix })
    }

    /// What follows a property: an operator and a literal, `in (…)`, or nothing for a
    /// boolean property.
    fn condition(&mut self, field: FilterField) -> Result<Filter, QueryError> {
        let name = field_name(field);
        let is_boolean = matches!(field, FilterField::Onboarded(_));
        let ends_condition = |token: Option<&Token>| match token {
            None => true,
            Some(token) => token.kind == Kind::Close || token.is_word("and") || token.is_word("or"),
        };
        if is_boolean && ends_condition(self.peek()) {
            return Ok(Filter::Compare {
                field,
                op: Comparison::Eq,
                value: FilterValue::Bool(true),
            });
        }
        let operator_expected =
            format!("a comparison operator (eq, ne, gt, ge, lt, le or in) after '{name}'");
        let operator = self.expect_token(&operator_expected)?;
        if operator.is_word("in") {
            return self.in_list(field);
        }
        let op = match &operator.kind {
            Kind::Word(word) => comparison(word),
            _ => None,
        }
        .ok_or_else(|| unexpected(&operator, &operator_expected))?;
        if is_boolean && !matches!(op, Comparison::Eq | Comparison::Ne) {
            return Err(error_at(
                operator.position,
                format!(
                    "'{}' cannot compare the boolean property '{name}' (use eq or ne)",
                    operator_name(op)
                ),
            ));
        }
        let value = self.literal(field)?;
        Ok(Filter::Compare { field, op, value })
    }

    /// `in ( literal *( , literal ) )`, the `in` already read: `eq` to any of the literals.
    /// Its parentheses count as a level of nesting: the list is an `or` group, which the
    /// canonical text puts in parentheses where an `and` or a `not` holds it.
    fn in_list(&mut self, field: FilterField) -> Result<Filter, QueryError> {
        let open = self.expect(&Kind::Open, "'(' after in")?;
        self.enter(open.position)?;
        let mut terms = Vec::new();
        loop {
            let value = self.literal(field)?;
            terms.push(Filter::Compare {
                field,
                op: Comparison::Eq,
                value,
            });
            let separator = self.expect_token("',' or ')' in the in list")?;
            match separator.kind {
                Kind::Comma => {}
                Kind::Close => break,
                _ => return Err(unexpected(&separator, "',' or ')' in the in list")),
            }
        }
        self.depth -= 1;
        Ok(chain(terms, Junction::Or))
    }

    /// A literal of the type `field` compares with.
    fn literal(&mut self, field: FilterField) -> Result<FilterValue, QueryError> {
        let expected = match field {
            FilterField::DisplayName => "a string literal such as 'Contoso' for displayName",
            FilterField::PartnerState => "a partnerState member such as 'enabled'",
            FilterField::LastHeartbeat => {
                "an unquoted date-time such as 2024-01-01T00:00:00Z for lastHeartbeatDateTime"
            }
            FilterField::Onboarded(_) => "true or false",
            FilterField::Id => "a quoted partner id such as '0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11'",
        };
        let token = self.expect_token(expected)?;
        match (field, &token.kind) {
            (FilterField::DisplayName, Kind::Text(text)) => Ok(FilterValue::Text(text.clone())),
            (FilterField::Id, Kind::Text(text)) => text
                .parse::<PartnerId>()
                .map(FilterValue::Id)
                .map_err(|_| error_at(token.position, format!("'{text}' is not a partner id"))),
            (FilterField::PartnerState, Kind::Text(text)) => state(text, token.position),
            (FilterField::PartnerState, Kind::Word(word)) if word == STATE_TYPE => {
                match self.peek() {
                    Some(Token {
                        kind: Kind::Text(text),
                        adjacent: true,
                        position,
                    }) => {
                        let (text, position) = (text.clone(), *position);
                        self.next += 1;
                        state(&text, position)
                    }
                    _ => Err(unexpected(&token, expected)),
                }
            }
            (FilterField::Onboarded(_), Kind::Word(word)) if word == "true" => {
                Ok(FilterValue::Bool(true))
            }
            (FilterField::Onboarded(_), Kind::Word(word)) if word == "false" => {
                Ok(FilterValue::Bool(false))
            }
            (FilterField::LastHeartbeat, Kind::Word(word))
                if word.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                datetime::parse(word)
                    .map(FilterValue::Instant)
                    .map_err(|e| error_at(token.position, e))
            }
            _ => Err(unexpected(&token, expected)),
        }
    }
}

fn unexpected(token: &Token, expected: &str) -> QueryError {
    QueryError::new(format!(
        "$filter: unexpected {} at position {}; expected {expected}",
        token.describe(),
        token.position
    ))
}

fn state(text: &str, position: usize) -> Result<FilterValue, QueryError> {
    text.parse::<PartnerState>()
        .map(FilterValue::State)
        .map_err(|_| {
            let members: Vec<&str> = PartnerState::ALL.iter().map(|s| s.as_str()).collect();
            error_at(
                position,
                format!(
                    "'{text}' is not a partnerState member ({})",
                    members.join(", ")
                ),
            )
        })
}

/// The two associative operators, whose chains the parser flattens.
#[derive(Debug, Clone, Copy)]
enum Junction {
    And,
    Or,
}

impl Junction {
    fn join(self) -> fn(Box<Filter>, Box<Filter>) -> Filter {
        match self {
            Self::And => Filter::And,
            Self::Or => Filter::Or,
        }
    }

    /// Appends the operands of `filter` to `operands`: its own when it is a chain of this
    /// operator (already balanced, so the recursion is shallow), else `filter` itself.
    fn splice(self, filter: Filter, operands: &mut Vec<Filter>) {
        match (self, filter) {
            (Self::And, Filter::And(left, right)) | (Self::Or, Filter::Or(left, right)) => {
                self.splice(*left, operands);
                self.splice(*right, operands);
            }
            (_, other) => operands.push(other),
        }
    }
}

/// Joins `terms` with `junction` as a balanced tree of their operands, a term that is itself
/// a chain of `junction` spliced in: grouping never changes the tree, so equal filters have
/// one canonical text, and the canonical text needs no parentheses to rebuild the tree.
fn chain(terms: Vec<Filter>, junction: Junction) -> Filter {
    let mut operands = Vec::with_capacity(terms.len());
    for term in terms {
        junction.splice(term, &mut operands);
    }
    balanced(operands, junction.join())
}

/// Joins `terms` with `join` as a balanced tree: same meaning as a left-nested chain (the
/// operators are associative), logarithmic depth.
fn balanced(mut terms: Vec<Filter>, join: fn(Box<Filter>, Box<Filter>) -> Filter) -> Filter {
    if terms.len() == 1
        && let Some(only) = terms.pop()
    {
        return only;
    }
    let right = terms.split_off(terms.len().div_ceil(2));
    join(
        Box::new(balanced(terms, join)),
        Box::new(balanced(right, join)),
    )
}

fn filter_field(name: &str, position: usize) -> Result<FilterField, QueryError> {
    let field = match name {
        "displayName" => Some(FilterField::DisplayName),
        "partnerState" => Some(FilterField::PartnerState),
        "lastHeartbeatDateTime" => Some(FilterField::LastHeartbeat),
        "id" => Some(FilterField::Id),
        _ => Platform::ALL.into_iter().find_map(|platform| {
            (name.strip_prefix(platform.property_prefix()) == Some("Onboarded"))
                .then_some(FilterField::Onboarded(platform))
        }),
    };
    field.ok_or_else(|| {
        if PARTNER_PROPERTIES.contains(&name) {
            error_at(position, format!("'{name}' cannot be used in a filter"))
        } else {
            error_at(
                position,
                format!("'{name}' is not a property of complianceManagementPartner"),
            )
        }
    })
}

fn field_name(field: FilterField) -> String {
    field.property_name()
}

fn comparison(word: &str) -> Option<Comparison> {
    match word {
        "eq" => Some(Comparison::Eq),
        "ne" => Some(Comparison::Ne),
        "gt" => Some(Comparison::Gt),
        "ge" => Some(Comparison::Ge),
        "lt" => Some(Comparison::Lt),
        "le" => Some(Comparison::Le),
        _ => None,
    }
}

fn operator_name(op: Comparison) -> &'static str {
    match op {
        Comparison::Eq => "eq",
        Comparison::Ne => "ne",
        Comparison::Gt => "gt",
        Comparison::Ge => "ge",
        Comparison::Lt => "lt",
        Comparison::Le => "le",
    }
}

fn literal_text(value: &FilterValue) -> String {
    match value {
        FilterValue::Text(text) => quoted(text),
        FilterValue::State(state) => quoted(state.as_str()),
        FilterValue::Instant(instant) => datetime::format(*instant),
        FilterValue::Bool(flag) => flag.to_string(),
        FilterValue::Id(id) => quoted(&id.to_string()),
    }
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests;
