//! A forgotten password: ask for a code by email, then enter it with a new password. Whether the
//! email has an account is never told; the screen after the first step reads the same either way.
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{input_value, AppContext};
use crate::{
    backend::UiError,
    state::{Action, Screen},
};

#[function_component(ForgotPassword)]
pub fn forgot_password() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let email = use_state(String::new);
    let error = use_state(|| None::<UiError>);
    let busy = use_state(|| false);
    let onsubmit = {
        let (ctx, email, error, busy) = (ctx.clone(), email.clone(), error.clone(), busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *busy || email.trim().is_empty() {
                return;
            }
            busy.set(true);
            let (ctx, email, error, busy) = (ctx.clone(), email.trim().to_string(), error.clone(), busy.clone());
            spawn_local(async move {
                let result = ctx.backend.forgot_password(email.clone()).await;
                busy.set(false);
                match result {
                    Ok(reset_id) => ctx.state.dispatch(Action::Show(Screen::ResetPassword { reset_id, email })),
                    Err(err) => error.set(Some(err)),
                }
            });
        })
    };
    let oninput = {
        let email = email.clone();
        Callback::from(move |e: InputEvent| email.set(input_value(&e)))
    };
    let back = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::Login)))
    };
    html! {
        <main class="centered">
            <form class="card auth" {onsubmit} novalidate=true aria-labelledby="forgot-title">
                <h1 id="forgot-title">{ "Forgot your password?" }</h1>
                <p class="muted">{ "Enter your email. If it has an account, we mail it a code to set a new password." }</p>
                <label for="forgot-email">{ "Email" }</label>
                <input id="forgot-email" type="email" autocomplete="username" required=true
                    value={(*email).clone()} {oninput} />
                <p class="form-error" id="forgot-error" role="alert">{ (*error).as_ref().map(|e| e.message.clone()).unwrap_or_default() }</p>
                <button type="submit" id="forgot-submit" class="primary" disabled={*busy || email.trim().is_empty()}>
                    { if *busy { "Sending…" } else { "Send a code" } }
                </button>
                <p class="switch"><button type="button" class="link" id="forgot-back" onclick={back}>{ "Back to login" }</button></p>
            </form>
        </main>
    }
}

#[derive(Properties, PartialEq)]
pub struct ResetProps {
    pub reset_id: String,
    pub email: String,
}

#[function_component(ResetPassword)]
pub fn reset_password(props: &ResetProps) -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let code = use_state(String::new);
    let password = use_state(String::new);
    let error = use_state(|| None::<UiError>);
    let busy = use_state(|| false);
    let onsubmit = {
        let (ctx, code, password, error, busy) =
            (ctx.clone(), code.clone(), password.clone(), error.clone(), busy.clone());
        let reset_id = props.reset_id.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *busy {
                return;
            }
            busy.set(true);
            let (ctx, code, password, error, busy, reset_id) =
                (ctx.clone(), code.clone(), (*password).clone(), error.clone(), busy.clone(), reset_id.clone());
            spawn_local(async move {
                let result = ctx.backend.reset_password(reset_id, (*code).clone(), password).await;
                busy.set(false);
                match result {
                    Ok(user) => ctx.state.dispatch(Action::LoggedIn(user)),
                    Err(err) => {
                        // A wrong code is of no further use: make room for the right one.
                        if err.code == "invalid_code" {
                            code.set(String::new());
                        }
                        error.set(Some(err));
                    }
                }
            });
        })
    };
    let on_code = {
        let code = code.clone();
        Callback::from(move |e: InputEvent| {
            code.set(input_value(&e).chars().filter(char::is_ascii_digit).take(6).collect())
        })
    };
    let on_password = {
        let password = password.clone();
        Callback::from(move |e: InputEvent| password.set(input_value(&e)))
    };
    let again = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::ForgotPassword)))
    };
    let message = (*error).as_ref().map(|e| match e.code.as_str() {
        "invalid_code" => "This code is wrong, used or expired. Check the mail, or ask for a new code.".to_string(),
        _ => e.message.clone(),
    });
    html! {
        <main class="centered">
            <form class="card auth" {onsubmit} novalidate=true aria-labelledby="reset-title">
                <h1 id="reset-title">{ "Set a new password" }</h1>
                <p class="muted">{ "If " }<strong>{ props.email.clone() }</strong>{ " has an account, a 6-digit code is on its way to it." }</p>
                <label for="reset-code">{ "Code" }</label>
                <input id="reset-code" class="code" inputmode="numeric" autocomplete="one-time-code" maxlength="6"
                    required=true value={(*code).clone()} oninput={on_code} />
                <label for="reset-password">{ "New password" }</label>
                <input id="reset-password" type="password" autocomplete="new-password" required=true
                    value={(*password).clone()} oninput={on_password} />
                <p class="hint">{ "At least 8 characters. You will be logged out everywhere else." }</p>
                <p class="form-error" id="reset-error" role="alert">{ message.unwrap_or_default() }</p>
                <button type="submit" id="reset-submit" class="primary" disabled={*busy || code.len() != 6 || password.is_empty()}>
                    { if *busy { "Saving…" } else { "Set password and log in" } }
                </button>
                <p class="switch"><button type="button" class="link" id="reset-again" onclick={again}>{ "Ask for a new code" }</button></p>
            </form>
        </main>
    }
}
