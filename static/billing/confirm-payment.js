// The 3-D Secure page a payment's email links to (templates/billing/confirm_payment.html):
// Stripe.js takes the customer through their bank's confirmation, then the page posts back and
// the server asks Stripe what happened. Loaded after Stripe.js; the page's values are data-*
// attributes of the button (the Content-Security-Policy allows no inline script).
document.getElementById("confirm").addEventListener("click", async function () {
  this.disabled = true;
  const stripe = Stripe(this.dataset.publishableKey);
  // Real Stripe leaves an off-session intent without its card: the page names it again.
  const method = this.dataset.paymentMethod;
  const data = method ? {payment_method: method} : undefined;
  const result = await stripe.confirmCardPayment(this.dataset.clientSecret, data);
  if (result.error) {
    const error = document.getElementById("error");
    error.textContent = result.error.message;
    error.hidden = false;
  }
  // Whatever the browser saw, the server asks Stripe what happened.
  document.getElementById("done").submit();
});
