//! Login with email and password.
use parley_common::SignupMode;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{input_value, AppContext};
use crate::{
    backend::UiError,
    state::{Action, Screen},
};

#[function_component(Login)]
pub fn login() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let email = use_state(String::new);
    let password = use_state(String::new);
    let error = use_state(|| None::<UiError>);
    let busy = use_state(|| false);

    let onsubmit = {
        let (ctx, email, password, error, busy) =
            (ctx.clone(), email.clone(), password.clone(), error.clone(), busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *busy {
                return;
            }
            busy.set(true);
            let (ctx, email, password, error, busy) =
                (ctx.clone(), (*email).clone(), (*password).clone(), error.clone(), busy.clone());
            spawn_local(async move {
                let result = ctx.backend.login(email, password).await;
                busy.set(false);
                match result {
                    Ok(user) => ctx.state.dispatch(Action::LoggedIn(user)),
                    Err(err) => error.set(Some(err)),
                }
            });
        })
    };
    let field = |set: UseStateHandle<String>| Callback::from(move |e: InputEvent| set.set(input_value(&e)));
    let to_signup = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::Signup)))
    };
    let to_forgot = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::ForgotPassword)))
    };
    let to_server = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::Server)))
    };
    let instance = ctx.state.instance.clone();
    let title = instance.as_ref().map_or("Parley".to_string(), |i| i.name.clone());
    let can_sign_up = instance.as_ref().is_none_or(|i| i.signup != SignupMode::Closed);
    let message = (*error).as_ref().map(|e| e.message.clone());

    html! {
        <main class="centered">
            <form class="card auth" {onsubmit} novalidate=true aria-labelledby="login-title">
                <h1 id="login-title">{ format!("Log in to {title}") }</h1>
                if let Some(notice) = ctx.state.notice.clone() {
                    <p class="notice" role="status">{ notice }</p>
                }
                <label for="login-email">{ "Email" }</label>
                <input id="login-email" name="email" type="email" autocomplete="username" required=true
                    value={(*email).clone()} oninput={field(email.clone())} />
                <label for="login-password">{ "Password" }</label>
                <input id="login-password" name="password" type="password" autocomplete="current-password" required=true
                    value={(*password).clone()} oninput={field(password.clone())} />
                <p class="form-error" role="alert">{ message.unwrap_or_default() }</p>
                <p class="forgot"><button type="button" id="forgot-password" class="link" onclick={to_forgot}>{ "Forgot your password?" }</button></p>
                <button type="submit" id="login-submit" class="primary" disabled={*busy}>{ if *busy { "Logging in…" } else { "Log in" } }</button>
                if can_sign_up {
                    <p class="switch">{ "New here? " }<button type="button" id="to-signup" class="link" onclick={to_signup}>{ "Create an account" }</button></p>
                } else {
                    <p class="switch muted">{ "New accounts are created by the administrator." }</p>
                }
                if ctx.backend.chooses_server() {
                    <p class="switch server">
                        <span class="muted">{ "Server: " }</span><span id="current-server">{ ctx.state.server.clone().unwrap_or_default() }</span>
                        { " · " }
                        <button type="button" id="change-server" class="link" onclick={to_server}>{ "Change server" }</button>
                    </p>
                }
            </form>
        </main>
    }
}
