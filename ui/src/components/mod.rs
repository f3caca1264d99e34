//! One component per file. Components read the state and call the backend through `AppContext`;
//! they never touch the network themselves.
use std::{ops::Deref, rc::Rc};

use yew::UseReducerHandle;

use crate::{
    backend::{Backend, SharedBackend, UiError},
    state::State,
};

pub mod app;
pub mod chat_list;
pub mod chat_page;
pub mod choose_server;
pub mod composer;
pub mod connection_banner;
pub mod conversation;
pub mod login;
pub mod new_chat;
pub mod reset_password;
pub mod settings;
pub mod signup;
pub mod verify;

/// The backend, comparable by identity so it can sit in props and contexts.
#[derive(Clone)]
pub struct BackendHandle(pub SharedBackend);

impl PartialEq for BackendHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl From<SharedBackend> for BackendHandle {
    fn from(backend: SharedBackend) -> Self {
        BackendHandle(backend)
    }
}

impl Deref for BackendHandle {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// What every component may reach.
#[derive(Clone, PartialEq)]
pub struct AppContext {
    pub state: UseReducerHandle<State>,
    pub backend: BackendHandle,
}

/// Which form field an error code belongs to, so it shows next to that field.
pub fn field_of(error: &UiError) -> &'static str {
    match error.code.as_str() {
        "invalid_email" | "email_taken" | "user_not_found" | "cannot_chat_with_self" => "email",
        "weak_password" | "invalid_password" => "password",
        "invalid_display_name" => "display_name",
        "invalid_code" | "code_expired" | "code_attempts_exhausted" => "code",
        _ => "form",
    }
}

/// The error for `field`, if the current one belongs there.
pub fn error_for(error: &Option<UiError>, field: &str) -> Option<String> {
    error.as_ref().filter(|e| field_of(e) == field).map(|e| e.message.clone())
}

/// What is wrong with the server itself, in words, for the desktop app's own error codes.
pub fn server_problem(error: &UiError) -> String {
    let detail = error.message.trim_end_matches('.');
    match error.code.as_str() {
        "certificate" => format!("The server's certificate was refused: {detail}."),
        "network" => format!("The server cannot be reached: {detail}."),
        "not_parley" => "This address answers, but it is not a Parley server.".into(),
        _ => format!("{detail}."),
    }
}

/// Value of the input element an event came from.
pub fn input_value(event: &yew::InputEvent) -> String {
    use yew::TargetCast;
    event.target_unchecked_into::<web_sys::HtmlInputElement>().value()
}
